"""HF transformers' next-token loss of a model folder on the contexts bench/model-loss.ts wrote,
next to monosemantic's (from the same file): the check that a model trained by monosemantic loads
in HF as GPT2LMHeadModel and computes the same function.

    node dist/bench/model-loss.js --model models/a --json ids.json
    python3 bench/reference/hf_model_loss.py ids.json [--device cpu|cuda]

fp32 weights (the folder's bf16 ones, widened), fp32 matmuls (TF32 off).
"""
import argparse
import json

import torch
from transformers import GPT2LMHeadModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ids")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    with open(a.ids) as f:
        ref = json.load(f)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = GPT2LMHeadModel.from_pretrained(ref["model"], torch_dtype=torch.float32).to(a.device).eval()
    ids = torch.tensor(ref["contexts"], dtype=torch.long, device=a.device)
    with torch.no_grad():
        logits = model(ids).logits.float()
    # Position t predicts token t + 1.
    per_token = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
    ).view(ids.shape[0], -1)
    hf = per_token.mean(dim=1).tolist()
    print(f"{ref['model']}: {len(hf)} contexts of {ids.shape[1]} tokens, {a.device}")
    print("| context | monosemantic | HF | difference |")
    print("| ---: | ---: | ---: | ---: |")
    for i, (ours, theirs) in enumerate(zip(ref["loss"], hf)):
        print(f"| {i} | {ours:.7f} | {theirs:.7f} | {abs(ours - theirs):.1e} |")
    mean = per_token.mean().item()
    print(f"mean: monosemantic {ref['mean']:.7f}, HF {mean:.7f}, difference {abs(ref['mean'] - mean):.1e}")


if __name__ == "__main__":
    main()
