# One image for every Synesthesia service; compose.yaml picks the service by command.
# CUDA runtime base: torch's CUDA wheels bring their own CUDA libraries, the base
# brings the driver-facing pieces the NVIDIA container toolkit expects.
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    UV_LINK_MODE=copy VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip libsndfile1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m pip install --no-cache-dir --break-system-packages uv==0.13.9

WORKDIR /app
# Dependencies first, so code edits do not reinstall torch.
COPY pyproject.toml README.md ./
COPY clients/pyproject.toml clients/pyproject.toml
RUN mkdir -p services models clients/synesthesia && touch services/__init__.py models/__init__.py \
        clients/synesthesia/__init__.py \
    && uv venv /opt/venv --python python3 \
    && uv pip install --python /opt/venv/bin/python -e ./clients -e .

COPY protos protos
COPY clients clients
COPY services services
COPY models models
COPY scripts scripts

ENV SYN_HOST=0.0.0.0
EXPOSE 50050 50080 50051 50052 50053 50054
CMD ["python", "-m", "services.gateway", "--port", "50050"]
