# ScaLoRA Server on an NVIDIA GPU.
# onnxruntime-node 1.30's CUDA execution provider is built for CUDA 12 + cuDNN 9.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# Deno from its official binary image (same version as the README commands).
COPY --from=denoland/deno:bin-2.9.6 /deno /usr/local/bin/deno

# libvulkan1: the Vulkan loader, so WebGPU (onnxruntime's bundled Dawn) can reach the NVIDIA
# driver's Vulkan ICD, which the NVIDIA container toolkit mounts with the "graphics" capability.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libvulkan1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV DENO_DIR=/app/.deno-cache

# Dependencies first (cached layer). onnxruntime-node's postinstall script
# downloads the CUDA provider libraries; Deno only runs it when allowed.
COPY deno.json deno.lock ./
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 deno install --frozen --allow-scripts=npm:onnxruntime-node

COPY src ./src
COPY routes ./routes
COPY kernels ./kernels
COPY migrations ./migrations
RUN deno cache src/main.ts

# auto: CUDA when its provider and the driver are present, else WebGPU on the GPU, else the CPU.
ENV DEVICE=auto \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000
CMD ["deno", "task", "start"]
