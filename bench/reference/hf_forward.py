"""HF transformers forward throughput on the shapes of bench/lm-forward.ts (random init, no downloads).

    python3 bench/reference/hf_forward.py [--device cpu|cuda] [--dtype float32|bfloat16] [--batch 8] [--ctx 256]
                                         [--gpt2-batch 1] [--gpt2-ctx 128] [--iters 5]

Cases: the 1-layer model (d_model 128, d_mlp 512, 4 heads, ReLU, vocab 4096) harvesting the MLP
activation (forward hook on mlp.act; the base model `model.transformer` runs, without the LM head,
the closest HF comes to an early stop), its full forward with logits, and its full forward with the
loss; GPT-2 small's full forward with logits. Median wall time, CUDA synchronised. --dtype bfloat16
converts the whole model (weights, layer norms, residual stream and logits in bf16), where
monosemantic's bf16 rounds the matrix products' operands only.
"""
import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def timed(fn, iters, device):
    fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--gpt2-batch", type=int, default=1)
    p.add_argument("--gpt2-ctx", type=int, default=128)
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    rows = []
    paper = GPT2Config(n_layer=1, n_embd=128, n_head=4, n_inner=512, vocab_size=4096, n_positions=1024, activation_function="relu")
    model = GPT2LMHeadModel(paper).to(a.device, dtype).eval()
    ids = torch.randint(0, 4096, (a.batch, a.ctx), device=a.device)
    captured = {}
    model.transformer.h[0].mlp.act.register_forward_hook(lambda m, i, o: captured.__setitem__("post", o))
    with torch.inference_mode():
        ms = timed(lambda: model.transformer(ids), a.iters, a.device)
        rows.append((f"1-layer d128: harvest mlp.hook_post (B {a.batch} x T {a.ctx})", a.batch * a.ctx, ms))
        ms = timed(lambda: model(ids), a.iters, a.device)
        rows.append((f"1-layer d128: full forward + logits (B {a.batch} x T {a.ctx})", a.batch * a.ctx, ms))
        ms = timed(lambda: model(ids, labels=ids), a.iters, a.device)
        rows.append((f"1-layer d128: full forward + loss (B {a.batch} x T {a.ctx})", a.batch * a.ctx, ms))
    gpt2 = GPT2LMHeadModel(GPT2Config()).to(a.device, dtype).eval()
    ids = torch.randint(0, 50257, (a.gpt2_batch, a.gpt2_ctx), device=a.device)
    with torch.inference_mode():
        ms = timed(lambda: gpt2(ids), max(2, (a.iters + 1) // 2), a.device)
        rows.append((f"GPT-2 small: full forward + logits (B {a.gpt2_batch} x T {a.gpt2_ctx})", a.gpt2_batch * a.gpt2_ctx, ms))
    print(f"HF transformers {__import__('transformers').__version__}, torch {torch.__version__}, {a.device}, {a.dtype}, threads {torch.get_num_threads()}")
    print("| case | tokens | median ms | tokens/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, tokens, ms in rows:
        print(f"| {name} | {tokens} | {ms:.1f} | {tokens * 1000 / ms:,.0f} |")


if __name__ == "__main__":
    main()
