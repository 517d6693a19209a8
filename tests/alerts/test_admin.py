"""Admin: operators manage channels (validated), everyone reads deliveries, nobody edits them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from alerts.models import AlertChannel, AlertDelivery

pytestmark = pytest.mark.django_db

ADD = "admin:alerts_alertchannel_add"


def channel_form(**overrides) -> dict:
    data = {
        "name": "ops",
        "kind": "webhook",
        "webhook_url": "https://hooks.example.com/T0/abc",
        "email_recipients": "",
        "min_severity": "high",
        "is_active": "on",
        "description": "",
    }
    data.update(overrides)
    return data


def test_operator_adds_a_webhook_channel_with_filters(client, bob):
    client.force_login(bob)
    page = client.get(reverse(ADD))
    assert page.status_code == 200 and b'value="postgresql"' in page.content
    response = client.post(reverse(ADD), channel_form(db_types=["mysql", "postgresql"], environments=["production"]))
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = AlertChannel.objects.get()
    assert (channel.db_types, channel.environments, channel.min_severity) == (
        ["mysql", "postgresql"],
        ["production"],
        "high",
    )
    listing = client.get(reverse("admin:alerts_alertchannel_changelist")).content.decode()
    assert "https://hooks.example.com/…" in listing and "abc" not in listing  # the path (often a token) is hidden


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"webhook_url": "ftp://files.example.com/x"}, "webhook_url", "Enter a valid URL."),
        ({"webhook_url": "javascript:alert(1)"}, "webhook_url", "Enter a valid URL."),
        ({"webhook_url": ""}, "webhook_url", "A webhook channel needs a URL."),
        ({"kind": "email", "webhook_url": ""}, "email_recipients", "An e-mail channel needs at least one recipient."),
        (
            {"kind": "email", "email_recipients": "dba@example.com, not-an-address"},
            "email_recipients",
            "not-an-address is not a valid e-mail address.",
        ),
        ({"db_types": ["db2"]}, "db_types", "Select a valid choice."),
    ],
)
def test_channel_form_validation(client, alice, data, field, message):
    client.force_login(alice)
    response = client.post(reverse(ADD), channel_form(**data))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and any(message in e for e in errors[field]), errors
    assert AlertChannel.objects.count() == 0


def test_an_email_channel_accepts_several_recipients(client, alice):
    client.force_login(alice)
    data = channel_form(kind="email", webhook_url="", email_recipients="dba@example.com\nsec@example.com")
    assert client.post(reverse(ADD), data).status_code == 302
    assert AlertChannel.objects.get().recipients == ["dba@example.com", "sec@example.com"]


def test_viewer_sees_channels_but_cannot_manage_them(client, charlie):
    channel = AlertChannel.objects.create(name="ops", kind="email", email_recipients="dba@example.com")
    client.force_login(charlie)
    assert client.get(reverse("admin:alerts_alertchannel_changelist")).status_code == 200
    assert client.get(reverse(ADD)).status_code == 403
    assert (
        client.post(reverse("admin:alerts_alertchannel_delete", args=[channel.pk]), {"post": "yes"}).status_code == 403
    )
    assert AlertChannel.objects.filter(pk=channel.pk).exists()


@pytest.fixture
def delivery(db):
    channel = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url="https://hooks.example.com/x")
    return AlertDelivery.objects.create(
        channel=channel,
        channel_name="ops",
        event_kind="capability_gained",
        severity="critical",
        account_identity="'dba'@'%'",
        payload={"event": "privilege_escalation", "account": {"identity": "'dba'@'%'"}},
        status="failed",
        attempts=5,
        last_error="HTTP 500 from https://hooks.example.com/…",
    )


@pytest.mark.parametrize("user", ["alice", "bob", "charlie"])
def test_deliveries_are_read_only_for_everyone(client, role_user, delivery, user):
    client.force_login(role_user(user))
    listing = client.get(reverse("admin:alerts_alertdelivery_changelist"))
    assert listing.status_code == 200 and "HTTP 500 from https://hooks.example.com/…" in listing.content.decode()
    detail = client.get(reverse("admin:alerts_alertdelivery_change", args=[delivery.pk]))
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert b"privilege_escalation" in detail.content  # the payload is shown
    assert client.get(reverse("admin:alerts_alertdelivery_add")).status_code == 403
    assert (
        client.post(reverse("admin:alerts_alertdelivery_change", args=[delivery.pk]), {"status": "sent"}).status_code
        == 403
    )
    assert (
        client.post(reverse("admin:alerts_alertdelivery_delete", args=[delivery.pk]), {"post": "yes"}).status_code
        == 403
    )
    delivery.refresh_from_db()
    assert delivery.status == "failed"


def test_operator_sends_a_test_alert_to_a_real_receiver(
    client, bob, receiver, q_sync, django_capture_on_commit_callbacks
):
    channel = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url)
    client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:alerts_alertchannel_changelist"),
            {"action": "send_test_alert", "_selected_action": [channel.pk]},
        )
    assert response.status_code == 302
    assert [b["event"] for b in receiver.bodies()] == ["test"]
    assert AlertDelivery.objects.get().status == "sent"


def test_operator_resends_failed_deliveries_viewer_cannot(
    client, bob, charlie, delivery, receiver, q_sync, django_capture_on_commit_callbacks
):
    delivery.channel.webhook_url = receiver.url
    delivery.channel.save()
    url = reverse("admin:alerts_alertdelivery_changelist")
    action = {"action": "resend_failed", "_selected_action": [delivery.pk]}
    client.force_login(charlie)
    assert b"resend_failed" not in client.get(url).content
    client.post(url, action)
    assert receiver.requests == []
    client.force_login(bob)
    assert b"resend_failed" in client.get(url).content
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, action).status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    assert len(receiver.requests) == 1


def test_delivery_list_queries_do_not_grow_with_rows(client, alice, make_instance, django_assert_max_num_queries):
    channel = AlertChannel.objects.create(name="ops", kind="email", email_recipients="dba@example.com")
    instances = [make_instance(), make_instance()]

    def add(n: int) -> None:
        AlertDelivery.objects.bulk_create(
            AlertDelivery(
                channel=channel,
                channel_name="ops",
                event_kind="capability_gained",
                severity="high",
                instance=instances[i % 2],
                account_identity=f"'u{i}'@'%'",
                payload={},
            )
            for i in range(n)
        )

    client.force_login(alice)
    url = reverse("admin:alerts_alertdelivery_changelist")
    add(2)
    with django_assert_max_num_queries(25) as few:
        assert client.get(url).status_code == 200
    add(60)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(url)
    assert page.status_code == 200 and "&#x27;u59&#x27;@&#x27;%&#x27;" in page.content.decode()
