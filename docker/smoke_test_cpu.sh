#!/usr/bin/env bash
# Build the CPU image on a base made with debootstrap and run it: `tcpade-trt --version`, the demo (the
# image's default command), then `tcpade-trt serve` on the demo's INT8 engines answering one generation.
# Needs no registry and no container runtime daemon: podman builds with chroot isolation, buildah runs
# commands in the image the same way. Where `podman run` works, it does the same:
#   podman run --rm -v "$OUT:/home/tcpade/demo-out" localhost/tcpade-trt:cpu
#
# Usage (root): docker/smoke_test_cpu.sh OUT_DIR          (the demo's output lands in OUT_DIR)
# Environment:
#   TORCH_INDEX_DIR  a local pip index folder holding torch's CPU wheel (TORCH_INDEX_DIR/torch/index.html),
#                    mounted into the build; default: PyTorch's CPU index over the network
#   EXTRA_CA_DIR     passed to make_base.sh (a TLS-intercepting proxy's certificates)
set -euo pipefail
out=${1:?usage: docker/smoke_test_cpu.sh OUT_DIR}
mkdir -p "$out"
out=$(realpath "$out")
cd "$(dirname "$0")/.."
base=localhost/tcpade-base:bookworm-py311
image=localhost/tcpade-trt:cpu

podman image exists "$base" || docker/make_base.sh "$base"
build=(--format docker --isolation chroot -f docker/Dockerfile.cpu --build-arg "BASE=$base" -t "$image")
if [[ -n "${TORCH_INDEX_DIR:-}" ]]; then
    build+=(--build-arg TORCH_INDEX=file:///torch-index -v "$(realpath "$TORCH_INDEX_DIR"):/torch-index:ro")
fi
echo "== build"
time podman build "${build[@]}" .
podman image inspect "$image" --format 'image {{.Id}}: {{.Size}} bytes, user {{.Config.User}}, entrypoint {{.Config.Entrypoint}}'

container=$(buildah from "$image")
trap 'buildah rm "$container" >/dev/null' EXIT
chown 10001 "$out"  # the image runs as user 10001
run=(buildah run --isolation chroot --user 10001 --volume "$out:/home/tcpade/demo-out" "$container" --)

echo "== tcpade-trt --version"
"${run[@]}" tcpade-trt --version
echo "== the demo (the image's default command)"
time "${run[@]}" tcpade-trt demo --out /home/tcpade/demo-out
ls -l "$out"

echo "== serve the demo's INT8 engines and ask for one image"
# one shell inside the image: start the server, call it, stop it and its Ray processes
"${run[@]}" sh -c '
tcpade-trt serve --engines /home/tcpade/demo-out/engines/demo-int8 --port 8765 > /tmp/serve.log 2>&1 &
python - <<"EOF"
import json, time, urllib.request
for _ in range(180):
    try:
        print(urllib.request.urlopen("http://127.0.0.1:8765/healthz", timeout=5).read().decode())
        break
    except OSError:
        time.sleep(1)
body = json.dumps({"class": "astronaut", "seed": 3, "cache": "tcpade-fast", "format": "json"}).encode()
request = urllib.request.Request("http://127.0.0.1:8765/v1/generate", data=body,
                                 headers={"Content-Type": "application/json"})
answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
assert answer["image_png_base64"], answer
print("generated:", answer["stats"])
EOF
status=$?
ray stop --force > /dev/null 2>&1
[ $status -eq 0 ] || tail -20 /tmp/serve.log
exit $status
'
echo "== smoke test passed"
