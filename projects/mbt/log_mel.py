"""Log-mel spectrograms of waveforms, as TensorFlow ops (inside tf.data maps).

Nagrani et al., "Attention Bottlenecks for Multimodal Fusion", NeurIPS 2021
(arXiv:2107.00135), section 4.2: audio at 16 kHz, mono, turned into log-mel
spectrograms of 128 mel bins with a 25 ms Hamming window and a 10 ms hop, i.e.
`100 t` frames for `t` seconds. The short-time Fourier transform and the mel filter
bank are `tf.signal`'s. Importing this module imports TensorFlow.
"""

import tensorflow as tf

# Added to the mel energies before the log, so that silence gives log(1e-6), not -inf.
LOG_OFFSET = 1e-6


def log_mel_spectrogram(
    waveform: tf.Tensor,
    *,
    sample_rate: int,
    num_mel_bins: int = 128,
    window_seconds: float = 0.025,
    hop_seconds: float = 0.010,
    lower_edge_hertz: float = 0.0,
) -> tf.Tensor:
    """The log-mel spectrogram `[ceil(samples / hop), num_mel_bins]` (float32) of `waveform`.

    Arguments:
        waveform: float samples `[samples]` in [-1, 1].
        sample_rate: samples per second.
        num_mel_bins: mel bands, from `lower_edge_hertz` to the Nyquist frequency.
        window_seconds: length of the Hamming window.
        hop_seconds: distance between the starts of consecutive windows.
        lower_edge_hertz: the lowest frequency of the filter bank.

    Returns:
        `log(mel power + LOG_OFFSET)`: one row per hop (the waveform's end is
        zero-padded to fill the last window).
    """
    frame_length = int(round(window_seconds * sample_rate))
    frame_step = int(round(hop_seconds * sample_rate))
    fft_length = 1 << (frame_length - 1).bit_length()  # the next power of two
    stft = tf.signal.stft(
        tf.cast(waveform, tf.float32),
        frame_length=frame_length,
        frame_step=frame_step,
        fft_length=fft_length,
        window_fn=tf.signal.hamming_window,
        pad_end=True,
    )
    power = tf.math.square(tf.math.abs(stft))
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=num_mel_bins,
        num_spectrogram_bins=fft_length // 2 + 1,
        sample_rate=sample_rate,
        lower_edge_hertz=lower_edge_hertz,
        upper_edge_hertz=sample_rate / 2,
    )
    return tf.math.log(tf.linalg.matmul(power, mel_matrix) + LOG_OFFSET)
