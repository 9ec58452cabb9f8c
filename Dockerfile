# syntax=docker/dockerfile:1
# The Antaeus image: the package built as a wheel from this repository and
# installed into a virtualenv on python:3.12-slim, run as a non-root user.
#
#   docker build -t antaeus .
#   docker run -p 7000:7000 -v antaeus-data:/data antaeus          # SQLite in /data
#   docker run antaeus antaeus worker                              # any other command
#
# compose.yaml runs the same image as every Antaeus process (see README, Deployment).

# -- build: a wheel of the repository, installed with its dependencies into /opt/antaeus --
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/antaeus \
 && /opt/antaeus/bin/pip install /wheels/antaeus-*.whl \
 && /opt/antaeus/bin/pip uninstall -y pip

# -- runtime: the virtualenv only; no compiler, no source tree, no pip --
FROM python:3.12-slim
RUN groupadd --system --gid 10001 antaeus \
 && useradd --system --uid 10001 --gid antaeus --home-dir /data --shell /usr/sbin/nologin antaeus \
 && mkdir -p /data \
 && chown antaeus:antaeus /data
COPY --from=build /opt/antaeus /opt/antaeus
ENV PATH=/opt/antaeus/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ANTAEUS_HOST=0.0.0.0 \
    ANTAEUS_PORT=7000
# The working directory is writable: the default SQLite file (antaeus.db) and the
# in-process simulator's state live here; mount a volume on it to keep them.
WORKDIR /data
USER 10001:10001
EXPOSE 7000
# No curl in the slim image: Python asks /rest/health (answers "ok", needs no token).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ANTAEUS_PORT', '7000') + '/rest/health', timeout=2); sys.exit(0 if r.status == 200 else 1)"]
CMD ["antaeus", "serve"]
