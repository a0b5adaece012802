"""What a GPT of a given shape costs, estimated from its config alone (no weights built):
its parameters, one training process's peak memory, and a checkpoint's bytes.

The service refuses jobs past its budgets with these numbers (jobkinds.checks, jobkinds.disk);
they live beside the model so a change to the model's shape changes them in one place.
"""

from __future__ import annotations

from astropt.config import ModelSettings

FLOAT32 = 4
ADAMW_BYTES_PER_PARAM = 16  # float32 weights, gradients and AdamW's two moments
CHECKPOINT_BYTES_PER_PARAM = 12  # weights plus the trainer state (AdamW's two moments)
ACTIVATIONS_PER_TOKEN_LAYER = 16  # n_embd-wide float tensors a block keeps for its backward pass


def estimate_params(m: ModelSettings) -> int:
    """Weights: 12 d^2 per block (attention 4 d^2, MLP 8 d^2), the token embedding table, the
    head (Linear d -> 4d, GELU, Linear 4d -> vocab), positions and LayerNorms. The AION
    tokeniser's tables; the patch tokeniser's are smaller, so this is an upper bound for it."""
    d = m.n_embd
    blocks = 12 * m.n_layer * d**2
    head = 4 * d * d + 4 * d * m.vocab_size
    return blocks + m.vocab_size * d + head + m.block_size * d + (2 * m.n_layer + 1) * d


def estimate_train_bytes(m: ModelSettings, batch_size: int) -> int:
    """Peak memory of one training process, an upper estimate in float32.

    Parameters with their gradients and AdamW moments, plus what one micro-batch keeps for the
    backward pass: the blocks' activations, the attention matrices (materialised by the math
    kernel CPUs use) and the logits (five copies: logits, log-softmax, their gradients and a cast;
    measured on CPU within 10% of the peak). Gradient accumulation adds nothing: micro-batches run
    one after the other.
    """
    tokens = m.n_positions
    outputs = m.vocab_size if m.tokeniser == "aion" else m.patch_size**2 * 4
    state = estimate_params(m) * ADAMW_BYTES_PER_PARAM
    blocks = batch_size * tokens * m.n_layer * ACTIVATIONS_PER_TOKEN_LAYER * m.n_embd * FLOAT32
    attention = 2 * batch_size * m.n_head * tokens**2 * m.n_layer * FLOAT32
    logits = 5 * batch_size * tokens * outputs * FLOAT32
    return state + blocks + attention + logits


def estimate_checkpoint_bytes(m: ModelSettings) -> int:
    return estimate_params(m) * CHECKPOINT_BYTES_PER_PARAM
