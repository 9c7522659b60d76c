# syntax=docker/dockerfile:1
# The modelserve serving image for a GPU node (it also runs on a CPU-only node: the device is detected).
#
# Base: CUDA 13.0 + cuDNN 9 runtime on Ubuntu 24.04, because that is what the pinned wheels are built for:
#   - torch==2.13.0 (PyPI's default build) depends on the CUDA 13 wheels (nvidia-*-cu13, cuDNN 9.20);
#   - onnxruntime-gpu==1.31.1 is built against CUDA 13.0 and cuDNN 9.
# torch's wheels bring their own CUDA user-space libraries and the service calls
# onnxruntime.preload_dlls() so ONNX Runtime uses those same ones; the base image provides the
# matching CUDA environment the NVIDIA container toolkit expects. The host needs a driver for CUDA 13.
#
# Models: either mount a model store at /var/lib/modelserve/models (Kubernetes: the PVC), or bake
# the default models in at build time:  docker build --build-arg BAKE_MODELS=true -t modelserve .
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- build: a virtual environment
FROM ${CUDA_IMAGE} AS build
ARG BAKE_MODELS=false
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 BENTOML_HOME=/var/lib/modelserve \
    BENTOML_DO_NOT_TRACK=true
# The CUDA base image fixes the Ubuntu release; its python3 (3.12) comes from that release's updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY models ./models
COPY training ./training
COPY service ./service
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint constraints.txt . \
    && mkdir -p /var/lib/modelserve/models
# Optional: train the three default models into the image's store (about a minute on a CPU).
RUN if [ "$BAKE_MODELS" = "true" ]; then \
        for model in regression mlp transformer; do /opt/venv/bin/modelserve train "$model" --run-dir /tmp/runs || exit 1; done; \
    fi

# ---------------------------------------------------------------- runtime: no compilers, no caches
FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    BENTOML_HOME=/var/lib/modelserve BENTOML_DO_NOT_TRACK=true MODELSERVE_LOG_FORMAT=json \
    MODELSERVE_WATCH_SECONDS=30
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/modelserve modelserve
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=10001:10001 /var/lib/modelserve /var/lib/modelserve
USER 10001:10001
WORKDIR /var/lib/modelserve
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/livez', timeout=4)"]
ENTRYPOINT ["modelserve", "serve"]
CMD ["--host", "0.0.0.0", "--port", "3000"]
