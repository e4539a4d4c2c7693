# registry-gateway container image.
#
# Two stages: the builder turns the source tree into a wheel and installs it with its
# dependencies into /opt/venv; the runtime stage copies only that venv onto the same base
# image, so the venv's interpreter symlinks stay valid and no compiler or pip cache ships.
#
# The runtime is read-only-root friendly: bytecode is compiled at install time in the
# builder, PYTHONDONTWRITEBYTECODE stops any later writes, and nothing writes outside /tmp.

FROM python:3.11.13-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Only what the build needs; .dockerignore keeps tests, caches and .git out of the context.
COPY pyproject.toml README.md ./
COPY gateway ./gateway

# Build a wheel first so the installed package is exactly what a release would contain.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip install --no-cache-dir /wheels/*.whl


FROM python:3.11.13-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="registry-gateway" \
      org.opencontainers.image.description="Pull-through gateway for OCI/Docker registries" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# A fixed UID/GID so file ownership of mounted secrets and configs can be planned for.
# HOME is /nonexistent: give config paths (docker_config, *_file) absolutely, not with ~.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --no-log-init --uid 10001 --gid gateway \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin gateway

COPY --from=builder /opt/venv /opt/venv
# The embedded default (anonymous Docker Hub mirror), so the image runs without a mount.
COPY config/minimal.yaml /etc/registry-gateway/gateway.yaml

USER 10001:10001
WORKDIR /tmp

EXPOSE 5000

# Slim images have no curl; the venv's python does the probe. Assumes listen port 5000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]

# SIGTERM (docker stop, Kubernetes) drains pulls in flight for shutdown_grace, then exits 0.
STOPSIGNAL SIGTERM

ENTRYPOINT ["registry-gateway"]
CMD ["serve", "--config", "/etc/registry-gateway/gateway.yaml"]
