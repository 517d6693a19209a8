# Production-like image: gunicorn for the web, the same image runs the worker and the one-shot migrate
# (docker-compose.yml; docs/operations.md "Running with docker-compose").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compilers and headers, only to build the requirements into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# mysqlclient compiles against MariaDB Connector/C, python-ldap (django-auth-ldap) against libldap and
# libsasl2; every other requirement installs from a wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc pkg-config default-libmysqlclient-dev libldap2-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- source: the checkout without local state or secrets (there is no .dockerignore) -----------------------
FROM ${PYTHON_IMAGE} AS source
COPY . /src
RUN cd /src \
 && rm -rf .git .venv var .env .pytest_cache .ruff_cache test-results \
 && find . -name __pycache__ -prune -exec rm -rf {} + \
 && python -m compileall -q .

# --- runtime: the virtualenv, the shared libraries the drivers load, no build tools ----------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_ENV=production PATH=/opt/venv/bin:$PATH
# libmariadb3: mysqlclient. libltdl7 + libgssapi-krb5-2 (pulls libkrb5-3): the SQL Server ODBC driver bundled
# by mssql-python. libldap-2.5-0 + libsasl2-2: python-ldap. psycopg[binary] and oracledb (thin) carry their own
# libraries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 libltdl7 libgssapi-krb5-2 libldap-2.5-0 libsasl2-2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --from=source /src /app
# Fails the build when a driver cannot load its libraries here (instead of the first sync of that type).
RUN python deploy/check_runtime_libs.py
# Static files are part of the image (WhiteNoise serves them; the manifest storage needs them at start-up).
# Production settings refuse to load without keys: throwaway ones, for this command only.
RUN DJANGO_SECRET_KEY=collectstatic-only-$(python -c "import secrets; print(secrets.token_hex(16))") \
    WHALEFALL_FIELD_KEYS=$(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())") \
    DJANGO_ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput -v0
RUN useradd --create-home whalefall && mkdir -p /app/var && chown whalefall /app/var
USER whalefall
EXPOSE 8000
CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "config.wsgi:application"]
