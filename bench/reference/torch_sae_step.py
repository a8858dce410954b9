"""PyTorch reference for the standard SAE training step (the same math as monosemantic's, written the way
SAELens-style trainers write it), timed per shape.

    python3 bench/reference/torch_sae_step.py [--device cuda] [--shapes 512x16384x4096,512x131072x4096,768x24576x4096]
        [--iters 50] [--warmup 10] [--compile] [--json FILE]

Shapes are d x n x B (d = d_in, n = d_sae, B = batch rows). One step, as test/reference/sae-reference.ts:
    xc = x - b_dec;  f = relu(xc W_enc + b_enc);  xhat = f W_dec + b_dec
    loss = mean_b ||x_b - xhat_b||^2 + l1 * mean_b sum_i f_bi
    backward; remove from each decoder row's gradient its component along the row;
    Adam (fused on CUDA; lr 1e-4, betas 0.9/0.999); renormalise the decoder rows to unit norm;
    firing counts += #{b : f_bi > 0} (the dead-feature statistics a trainer keeps).
On CUDA the two matrix products and their gradients run under bf16 autocast with fp32 master weights
and fp32 Adam moments. --compile wraps the forward and loss in torch.compile (the backward is then
compiled too); the decoder constraint and the fused Adam stay as they are.

Inputs are random normal activations (never zeros), a few batches made on the device up front and
cycled. Each step is timed with CUDA events after the warm-up; the median is reported with TFLOP/s
counting 10·B·d·n FLOPs per step (five matrix products of 2·B·d·n).
"""
import argparse
import json
import statistics
import time

import torch


def parse_shapes(text):
    shapes = []
    for part in text.split(","):
        d, n, b = (int(v) for v in part.lower().split("x"))
        shapes.append((d, n, b))
    return shapes


class StandardSae(torch.nn.Module):
    def __init__(self, d, n, generator):
        super().__init__()
        w_dec = torch.randn(n, d, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_enc = torch.nn.Parameter(w_dec.t().clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(n))
        self.W_dec = torch.nn.Parameter(w_dec)
        self.b_dec = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x, l1):
        f = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        xhat = f @ self.W_dec + self.b_dec
        mse = (x - xhat).float().pow(2).sum(dim=1).mean()
        sparsity = f.float().sum(dim=1).mean()
        return mse + l1 * sparsity, f


def bench_shape(d, n, batch, device, iters, warmup, compile_forward, l1=5.0):
    cuda = device == "cuda"
    generator = torch.Generator().manual_seed(0)
    sae = StandardSae(d, n, generator).to(device)
    forward = torch.compile(sae) if compile_forward else sae
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4, betas=(0.9, 0.999), **({"fused": True} if cuda else {}))
    batches = [torch.randn(batch, d, generator=generator).to(device) for _ in range(4)]
    fire_counts = torch.zeros(n, dtype=torch.int64, device=device)

    def step(x):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss, f = forward(x, l1)
        loss.backward()
        with torch.no_grad():
            w, g = sae.W_dec, sae.W_dec.grad  # [n, d]: remove each row's parallel gradient component
            g -= (g * w).sum(dim=1, keepdim=True) * w / w.pow(2).sum(dim=1, keepdim=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True)
            fire_counts.add_((f > 0).sum(dim=0))
        return loss

    losses = []
    for i in range(warmup):
        losses.append(step(batches[i % len(batches)]).item())
    times = []
    for i in range(iters):
        x = batches[i % len(batches)]
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            loss = step(x)
            times.append((time.perf_counter() - t0) * 1000)
        losses.append(loss.item())
    ms = statistics.median(times)
    flops = 10 * batch * d * n
    return {
        "d": d, "n": n, "batch": batch,
        "mode": f"{'bf16 autocast' if cuda else 'f32'} {'torch.compile' if compile_forward else 'eager'}",
        "msMedian": ms, "msMin": min(times), "iters": iters,
        "tflops": flops / (ms * 1e-3) / 1e12,
        "samplesPerSecond": batch / (ms * 1e-3),
        "lossFirst": losses[0], "lossLast": losses[-1],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", default="512x16384x4096,512x131072x4096,768x24576x4096")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    torch.manual_seed(0)
    device_name = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    results = []
    for d, n, batch in parse_shapes(a.shapes):
        r = bench_shape(d, n, batch, a.device, a.iters, a.warmup, a.compile)
        results.append(r)
        print(f"torch {r['mode']:<24} d {d:>4} n {n:>6} B {batch:>5}: {r['msMedian']:8.3f} ms/step (median of {a.iters}), "
              f"{r['tflops']:7.2f} TFLOP/s, loss {r['lossFirst']:.4g} -> {r['lossLast']:.4g}", flush=True)
    if a.json:
        with open(a.json, "w") as out:
            json.dump({"device": device_name, "torch": torch.__version__, "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
