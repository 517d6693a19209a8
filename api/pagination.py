"""Page-number pagination: 20 per page like the admin, clients may ask for up to 200.

The count stops at ``adminkit.paging.COUNT_CAP`` (100,000) and a page is fetched by key first, as
in the admin: on ten million change-log rows an exact ``COUNT(*)`` and an ``OFFSET`` that builds
every skipped row are what made a list slow. ``count_capped`` says the true count is larger.
"""

from typing import Any

from rest_framework import pagination
from rest_framework.response import Response

from adminkit.paging import CappedPaginator


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 200
    django_paginator_class = CappedPaginator

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        response.data["count_capped"] = bool(getattr(self.page.paginator, "capped", False))
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["properties"]["count_capped"] = {
            "type": "boolean",
            "description": "True when there are more than `count` rows (the count stops at 100,000).",
        }
        return described
