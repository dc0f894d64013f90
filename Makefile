# segtool: `make demo` and `make test` do everything on a fresh Debian/Ubuntu
# machine with Go 1.26: they install what is missing first (make deps).

GO      ?= go
BIN     := bin/segtool
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := libopencv-dev libdnnl-dev pkg-config g++
DEMO    ?= demo

.PHONY: all deps peers build test demo bench accept fmt vet clean

all: build

# System packages only when they cannot be found; quiet and quick otherwise.
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists opencv4 || ! command -v g++ >/dev/null 2>&1 \
		|| [ ! -f /usr/include/oneapi/dnnl/dnnl.h ]; then \
		echo "make deps: installing $(APT_PKGS) with apt-get (OpenCV for gocv, oneDNN for the convolutions)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS) >/dev/null; \
	fi
	@$(GO) mod download

build: deps
	$(GO) build -o $(BIN) ./cmd/segtool

vet: deps
	$(GO) vet ./...

# The tests: gradients against finite differences, model files, resume, data
# loading, the command line end to end; then, with gocv's Mat profiler, that
# the image and video code (all of datasets' tests, and predict over a
# 300-frame video with a damaged stretch) leaves no gocv.Mat open.
test: deps
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -tags matprofile ./datasets
	$(GO) test -count=1 -tags matprofile -run LeaksNoMat ./cmd/segtool

# The embedded default: generated shapes; an auto-encoder pre-trained on
# the images; a segmenter trained from its encoder (its best epoch picked on
# a tenth of the training scenes); scores on held-out scenes it has never
# seen; the masks painted over the generated video.
demo: build
	$(BIN) data shapes --out $(DEMO)/shapes --n 800 --size 64 --frames 120
	$(BIN) data shapes --out $(DEMO)/shapes-val --n 100 --size 64 --seed 2 --frames 0
	$(BIN) train --config configs/ae-shapes.yaml --data $(DEMO)/shapes --out $(DEMO)/ae-run --force
	$(BIN) eval --model $(DEMO)/ae-run/best.safetensors --data $(DEMO)/shapes-val
	$(BIN) reconstruct --model $(DEMO)/ae-run/best.safetensors --input $(DEMO)/shapes-val --n 16 --out $(DEMO)/reconstructions.png
	$(BIN) train --config configs/seg-shapes.yaml --data $(DEMO)/shapes --out $(DEMO)/seg-run --force \
		--init-encoder $(DEMO)/ae-run/best.safetensors
	$(BIN) eval --model $(DEMO)/seg-run/best.safetensors --data $(DEMO)/shapes-val --confusion $(DEMO)/confusion.png
	$(BIN) predict --model $(DEMO)/seg-run/best.safetensors --input $(DEMO)/shapes/shapes.avi --out $(DEMO)/shapes-overlay.mp4 --legend --tile
	@echo; echo "Look at: $(DEMO)/reconstructions.png (inputs above their auto-encoder reconstructions)"
	@echo "         $(DEMO)/seg-run/predictions.png (image, true mask, predicted mask) and $(DEMO)/confusion.png"
	@echo "         $(DEMO)/seg-run/curves.png (loss, mIoU and every class's IoU, epoch by epoch)"
	@echo "         $(DEMO)/shapes-overlay.mp4 (the moving-shapes video with the predicted masks painted over it)"

# segtool against PyTorch on the same CPU (bench/), one table each:
#  - the same U-Net, batch 8 x 3 x 128 x 128, with and without batch norm,
#    2 threads: training step, inference, memory (first the check that both
#    compute the same function: same weights, same logits);
#  - predict on a 480x360 video with the CamVid model shape against
#    bench/predict_peer.py (OpenCV + PyTorch), frames/s.
# PyTorch and OpenCV are Debian's python3-torch and python3-opencv, for /usr/bin/python3.
BENCH_ARGS ?=
PREDICT_BENCH_ARGS ?=
peers:
	@/usr/bin/python3 -c 'import torch, cv2' 2>/dev/null || { \
		echo "make: installing python3-torch python3-opencv with apt-get (the PyTorch peers, for /usr/bin/python3)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3-torch python3-opencv >/dev/null; }

bench: build peers
	$(GO) test -count=1 -run Parity -v ./bench/segbench/
	$(GO) build -o bin/segbench ./bench/segbench
	$(GO) build -o bin/predictbench ./bench/predictbench
	@uptime
	bin/segbench $(BENCH_ARGS)
	bin/predictbench $(PREDICT_BENCH_ARGS)

# Long acceptance runs (about two hours on 2 cores): the MNIST auto-encoder
# against PCA, the MNIST VAE, the segmenter on membrane and CamVid (from
# scratch, from an auto-encoder, the better recipe) against the PyTorch
# reference.
accept: build peers
	./scripts/accept-ae-mnist.sh
	./scripts/accept-vae-mnist.sh
	./scripts/accept-seg.sh

clean:
	rm -rf bin $(DEMO)
