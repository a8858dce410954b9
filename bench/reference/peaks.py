"""The card's two ceilings, measured as found: a large bf16 matrix product and a large device copy
(TFLOP/s on random data; copy GB/s counting bytes read and written). Written as JSON for the
benchmarks that report fractions of peak.

    python3 bench/reference/peaks.py OUT.json [cuda|cpu]
"""
import json, sys, torch
path, device = sys.argv[1], sys.argv[2]
def bench(fn, iters=20):
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(iters):
            s.record(); fn(); e.record(); e.synchronize(); times.append(s.elapsed_time(e))
    else:
        import time
        times = []
        for _ in range(3):
            t = time.perf_counter(); fn(); times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]
n = 8192 if device == "cuda" else 512
a, b = (torch.randn(n, n, device=device).to(torch.bfloat16) for _ in range(2))
ms_bf16 = bench(lambda: a @ b)
torch.backends.cuda.matmul.allow_tf32 = False
af, bf = a.float(), b.float()
ms_f32 = bench(lambda: af @ bf)
src = torch.randn(1 << (28 if device == "cuda" else 22), device=device)
dst = torch.empty_like(src)
ms_copy = bench(lambda: dst.copy_(src))
r = {"bf16_tflops": 2 * n**3 / ms_bf16 / 1e9, "f32_tflops": 2 * n**3 / ms_f32 / 1e9,
     "copy_gbps": 2 * src.numel() * 4 / ms_copy / 1e6, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
json.dump(r, open(path, "w"), indent=2)
print(r)
