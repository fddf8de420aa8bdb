"""End to end: a tiny transformer encoder-decoder learns to reverse token sequences.

Random sequences of 6 tokens from 8 symbols; the target is the source reversed, fed to
the decoder behind a start token (teacher forcing). The reversal needs the position
embeddings, cross-attention and the causal decoder to work together; 200 steps of Adam
on a 1-layer, 32-wide model reach ~100% token accuracy (about 30 s of CPU).
"""

import equinox as eqx
import jax
import numpy as np
import optax

from scenic_eqx import loops, nn, tasks

PAD, BOS, FIRST_SYMBOL, VOCAB = 0, 1, 2, 10
LENGTH, BATCH_SIZE, NUM_STEPS = 6, 32, 200


def reversal_batches(seed: int, num_batches: int, batch_size: int):
    """Batches of random sources and their reversal, with teacher-forced decoder inputs."""
    rng = np.random.default_rng(seed)
    for _ in range(num_batches):
        source = rng.integers(FIRST_SYMBOL, VOCAB, size=(batch_size, LENGTH), dtype=np.int32)
        target = source[:, ::-1].copy()
        bos = np.full((batch_size, 1), BOS, np.int32)
        target_in = np.concatenate([bos, target[:, :-1]], axis=1)
        yield {
            "inputs": {"source": source, "target_in": target_in},
            "label": target,
            "batch_mask": np.ones(batch_size, np.float32),
        }


def test_reversal_is_learned_and_greedy_decoding_reproduces_it():
    model = nn.TransformerEncoderDecoder(
        VOCAB,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        mlp_dim=64,
        max_len=LENGTH,
        pad_id=PAD,
        key=jax.random.key(0),
    )
    task = tasks.EncoderDecoderTask(pad_id=PAD)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 5e-3, 20, NUM_STEPS)
    state, history = loops.fit(
        model,
        task,
        reversal_batches(0, NUM_STEPS, BATCH_SIZE),
        optimizer=optax.adam(schedule),
        num_steps=NUM_STEPS,
        key=jax.random.key(1),
        log_every=100,
        progress=False,
    )
    assert history[-1]["loss"] < history[0]["loss"]

    # Held-out sequences (another seed): every one is new with 8**6 possible sources.
    results = loops.evaluate(state.model, task, list(reversal_batches(1, 4, 64)))
    assert results["token_accuracy"] > 0.9, results
    assert results["perplexity"] < 1.5, results

    held_out = next(reversal_batches(2, 1, 64))
    decode = eqx.filter_jit(lambda m, s: jax.vmap(lambda x: m.decode(x, LENGTH, BOS))(s))
    decoded = np.asarray(decode(state.model, held_out["inputs"]["source"]))
    assert np.mean(np.all(decoded == held_out["label"], axis=1)) > 0.8
