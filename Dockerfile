# CPU image by default:   docker build -t attribution-harness .
# CUDA image: the CUDA torch wheels bundle the CUDA runtime, so picking the index is enough
# (run with `--gpus all` on a host with the NVIDIA container toolkit):
#   docker build -t attribution-harness:cuda \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# BASE_IMAGE swaps the base (any image with python >= 3.10 and pip on PATH, e.g. an
# nvidia/cuda or pytorch/pytorch image).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/root/.cache/huggingface \
    MPLBACKEND=Agg

# git: the run record stores the commit (harmless when absent)
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

# torch first, from the chosen index, so `pip install .` does not pull another build
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY harness ./harness
COPY conf ./conf
COPY tasks ./tasks
# through the lock: the versions the project was tested with (the CUDA torch of the cu index
# satisfies the lock's torch==2.13.0 too)
RUN pip install -c requirements/lock-cpu.txt ".[launchers]"

# runs (and the ground-truth cache) land in /app/outputs, the default results_dir: mount a host
# folder there (a preset run with results_dir=results/<preset> writes under /app/results)
VOLUME ["/app/outputs", "/root/.cache/huggingface"]

# the default job (toy GPT-2 zoo model, toy IOI, AtP vs activation patching); any other command
# replaces it: `docker run IMAGE harness -m experiment=smoke`, `docker run IMAGE harness-report ...`
CMD ["harness"]
