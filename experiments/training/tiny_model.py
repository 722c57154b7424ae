"""A tiny Llama-shaped causal LM with its own byte-level BPE tokenizer, built offline in about a second.

Used by tests, the demo and CI: no hub download is ever needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
VOCAB_SIZE = 2000
PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]

# Each turn is "<|role|>\n{content}<|eos|>\n"; the generation prompt is "<|assistant|>\n".
# {% generation %} marks assistant text for `return_assistant_tokens_mask`.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ message['content'] + eos_token + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def _corpus_texts() -> list[str]:
    # Sorted so that the tokenizer sees the files in the same order on every machine.
    return [p.read_text(encoding="utf-8") for p in sorted(CORPUS_DIR.glob("*.txt"))]


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_texts(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Like Llama: plain `tokenizer(text)` prepends BOS; the chat template writes BOS itself.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=ROLE_TOKENS,
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(output_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-init Llama + tokenizer to ``output_dir``; same seed → same files."""
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        # Wider than Llama's 0.02 so that a frozen random base still lets LoRA move the loss in 40 steps.
        initializer_range=0.1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {
        "name": "t4dm-tiny-llama",
        "seed": seed,
        "description": (
            "Random-init 2-layer Llama (hidden 64, 4 heads, 2 kv heads) with a byte-level BPE "
            f"tokenizer (vocab {len(tokenizer)}) trained on experiments/training/corpus/*.txt."
        ),
        "corpus_files": [p.name for p in sorted(CORPUS_DIR.glob("*.txt"))],
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "t4dm_tiny.json").write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out
