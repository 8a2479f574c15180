# One image for every Synesthesia service; compose.yaml and deploy/ pick the service by command.
#
#   docker build -t synesthesia:0.1.0 .        (BuildKit: DOCKER_BUILDKIT=1 on Docker < 23)
#
# Base: plain Debian with its Python 3.11. No CUDA base image: torch's CUDA wheels
# bring their own CUDA libraries (the nvidia-* wheels) and the NVIDIA container
# toolkit mounts the driver at run time, so a CUDA base would only duplicate
# gigabytes of libraries. The container test builds with BASE_IMAGE set to the
# same Debian release made locally; nothing else differs.
#
# Reproducible: Python packages are the exact pins of pyproject.toml; BASE_IMAGE
# can be pinned by digest (debian:bookworm-slim@sha256:...). No cache, pip or uv
# stays in a layer: uv runs from a build stage mounted only while installing,
# without a download cache. A registry CA bundle, where one is
# needed to reach the package index, comes in as the build secret `ca_bundle` and
# is never written to the image.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONUNBUFFERED=1
# nginx-light: the gateway's optional nginx front (SYN_GATEWAY_FRONT_PORT, services/gateway/front.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libsndfile1 nginx-light \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 synesthesia \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/synesthesia --create-home \
        --shell /usr/sbin/nologin synesthesia \
    && install -d -o synesthesia -g synesthesia /data/index

# The runtime requirements alone (pyproject's exact pins), so that editing the dev
# extra or the test settings does not invalidate the multi-gigabyte torch layer.
FROM runtime AS requirements
RUN --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    python3 -c "import tomllib; print(*tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies'], \
sep='\n')" > /requirements.txt

# uv, only ever bind-mounted into the final stage's install steps.
FROM runtime AS uv
ARG UV_VERSION=0.13.9
RUN --mount=type=secret,id=ca_bundle \
    apt-get update && apt-get install -y --no-install-recommends python3-venv \
    && python3 -m venv /uv \
    && if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && /uv/bin/pip install --no-cache-dir --quiet "uv==${UV_VERSION}"

FROM runtime
ARG VERSION=0.1.0
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="synesthesia" \
      org.opencontainers.image.description="Multimodal and generative model services over gRPC: captioning, generation, audio, embedding and a gateway; pick one by command." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Synesthesia" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never

# Dependencies first, so a code change does not reinstall torch. COPY is cached by
# content: this layer is rebuilt only when the runtime pins change. No download cache
# mount: unpacked, uv's cache would add another 5 GB to the builder's disk.
COPY --from=requirements /requirements.txt /opt/venv-requirements.txt
RUN --mount=type=bind,from=uv,source=/uv,target=/uv \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
    && /uv/bin/uv venv --quiet --python /usr/bin/python3 /opt/venv \
    && /uv/bin/uv pip install --quiet --python /opt/venv/bin/python --compile-bytecode \
        -r /opt/venv-requirements.txt

# The stack and the client distribution themselves: built as wheels and installed
# (not editable), checkpoints included as package data. The source is only mounted.
# protos/ goes where the installed code's REPO_ROOT points (site-packages): the
# gateway's HTTP front end compiles it for the OpenAPI document's comments.
RUN --mount=type=bind,from=uv,source=/uv,target=/uv \
    --mount=type=bind,target=/src,rw \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
    && /uv/bin/uv pip install --quiet --python /opt/venv/bin/python --compile-bytecode --no-deps \
        /src/clients /src \
    && cp -r /src/protos "$(python -c 'import services.runtime.settings as s; print(s.REPO_ROOT)')/protos" \
    && python -c "import models, pathlib, synesthesia.healthcheck; \
assert (pathlib.Path(models.__file__).parent / 'checkpoints' / 'manifest.json').is_file()"

USER synesthesia
WORKDIR /home/synesthesia
# The built-ins' out-of-world check is compiled by numba on first use (about 15 s on 2 cores): compiled
# here into the user's cache (~/.cache/numba), so a container starts with it. A container run as
# another user, or without that home, compiles it once at start-up instead.
RUN python -c "import models.shapesworld.world_check_kernels"
ENV SYN_HOST=0.0.0.0
# gRPC: gateway 50050, captioning 50051, generation 50052, audio 50053, embedding 50054;
# the gateway's HTTP/JSON 50080; Prometheus metrics 9100-9104 (synesthesia/services.py is the table).
EXPOSE 50050 50051 50052 50053 50054 50080 9100 9101 9102 9103 9104
CMD ["python", "-m", "services.gateway", "--port", "50050"]
