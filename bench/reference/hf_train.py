"""HF transformers training-step throughput for the model of bench/lm-train.ts (random init, no downloads).

    python3 bench/reference/hf_train.py [--device cpu|cuda] [--batch 16] [--ctx 256] [--iters 10] [--compile]

One step: forward with labels (mean next-token loss), backward, clip_grad_norm_(1.0), AdamW
(fused on CUDA; lr 1e-3, betas 0.9/0.95, weight decay 0.1), zero_grad. On CUDA the forward runs
under bf16 autocast with fp32 master weights. Median wall time per step, CUDA synchronised; and,
as bench/lm-train.ts times its own, the mean of --iters steps queued back to back with one
synchronisation at the end.
"""
import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=128, n_head=4, n_inner=512, vocab_size=8192, n_positions=a.ctx,
                     activation_function="relu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).to(a.device).train()
    cuda = a.device == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, **({"fused": True} if cuda else {}))
    forward = torch.compile(model) if a.compile else model
    ids = torch.randint(0, 8192, (a.batch, a.ctx), device=a.device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = forward(ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(3):
        step()
    times = []
    for _ in range(a.iters):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step().item()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    ms = statistics.median(times)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        last = step()
    last.item()
    if cuda:
        torch.cuda.synchronize()
    queued_ms = (time.perf_counter() - t0) * 1000 / a.iters
    tokens = a.batch * a.ctx
    name = f"HF GPT2LMHeadModel {a.device}{' bf16 autocast' if cuda else ' f32'}{' torch.compile' if a.compile else ' eager'}"
    print(f"{name}: {ms:.1f} ms/step (median of {a.iters}), {tokens * 1000 / ms:,.0f} tokens/s; {queued_ms:.1f} ms/step "
          f"({tokens * 1000 / queued_ms:,.0f} tokens/s) for {a.iters} queued back to back; torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
