# Triton 2.51 on CPU, for clusters without GPUs (kind, dev): the nvidia-pytriton wheel's server
# behind the `tritonserver` command NVIDIA's image has, so a generated Deployment runs unchanged.
# Build context: a folder holding wheels/ with rtflow's wheel (e2e/cluster.py writes it).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

# The server, the Python backend and its stub link these system libraries (ldd of the wheel's
# binaries); the rest ship inside the wheel.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libstdc++6 zlib1g libexpat1 \
 && rm -rf /var/lib/apt/lists/*

COPY wheels /tmp/wheels
RUN python -m pip install /tmp/wheels/rtflow-*.whl 'nvidia-pytriton==0.7.0' 'numpy>=1.21,<2' \
 && rm -rf /tmp/wheels \
 && printf '#!/bin/sh\nexec python -m rtflow.gpu.triton_exec "$@"\n' > /usr/local/bin/tritonserver \
 && chmod 0755 /usr/local/bin/tritonserver \
 && groupadd --gid 65532 triton \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin triton

USER 65532:65532
ENTRYPOINT ["tritonserver"]
