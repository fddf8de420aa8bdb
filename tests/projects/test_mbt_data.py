"""projects/mbt's data: the synthetic clips have the designed property (each modality
alone decides half of the class, both decide all of it), the in-memory dataset, and the
DMVR-layout audio-visual records written and read back (spectrograms, waveforms turned
into log-mel spectrograms, several labels, several test clips, refused records)."""

import os

import numpy as np
import pytest

from scenic_eqx import data, run

PROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "projects", "mbt")
synthetic = run.import_file(os.path.join(PROJECT, "synthetic_audiovisual.py"))
records = run.import_file(os.path.join(PROJECT, "audiovisual_records.py"))
make_records = run.import_file(os.path.join(PROJECT, "make_synthetic_records.py"))
run.import_file(os.path.join(PROJECT, "audiovisual_dataset.py"))

SIZES = dict(num_frames=8, image_size=16, spectrogram_frames=32, num_mel_bins=16)


def decoded_direction(rgb: np.ndarray) -> np.ndarray:
    """0 (left to right) or 1 per clip `[n, time, h, w, 3]`: where the bright square's left edge goes."""
    square = rgb.min(axis=-1) > 0.5  # the square's colour is at least 0.65, the noise at most 0.25
    left_edge = square.any(axis=2).argmax(axis=-1)  # [n, time]
    steps = np.sign(np.diff(left_edge, axis=1))
    assert np.all(steps == steps[:, :1]), "the square moves one way, one pixel a frame"
    return (steps[:, 0] < 0).astype(int)


def decoded_pitch(spectrogram: np.ndarray) -> np.ndarray:
    """0 (low) or 1 per spectrogram `[n, frames, mel]`: the half of the bins that sounds loudest."""
    loudest = spectrogram.mean(axis=1).argmax(axis=-1)
    return (loudest >= spectrogram.shape[-1] // 2).astype(int)


def bayes_accuracy(seen: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy of the best guess of the label from `seen` (the most frequent label of each value)."""
    right = sum(np.bincount(labels[seen == value]).max() for value in np.unique(seen))
    return right / len(labels)


def test_one_modality_decides_half_the_class_both_decide_all():
    inputs, labels = synthetic.make_split("test", 96, **SIZES)
    assert np.bincount(labels).tolist() == [24] * 4
    directions, pitches = decoded_direction(inputs["rgb"]), decoded_pitch(inputs["spectrogram"])
    np.testing.assert_array_equal([synthetic.label_of(d, p) for d, p in zip(directions, pitches)], labels)
    assert bayes_accuracy(2 * directions + pitches, labels) == 1.0
    assert bayes_accuracy(directions, labels) == 0.5
    assert bayes_accuracy(pitches, labels) == 0.5


def test_each_modality_is_blind_to_the_other_factor():
    # The frames of a clip are the same whatever its pitch, its sound whatever its
    # direction: no decoder of one modality, however good, can beat 50%.
    where = dict(seed=3, split="train", index=5, **SIZES)
    clips = {label: synthetic.make_example(label, **where) for label in range(4)}
    for direction in (0, 1):
        low, high = (clips[synthetic.label_of(direction, pitch)] for pitch in (0, 1))
        np.testing.assert_array_equal(low["rgb"], high["rgb"])
        assert not np.array_equal(low["spectrogram"], high["spectrogram"])
    for pitch in (0, 1):
        left, right = (clips[synthetic.label_of(direction, pitch)] for direction in (0, 1))
        np.testing.assert_array_equal(left["spectrogram"], right["spectrogram"])
        assert not np.array_equal(left["rgb"], right["rgb"])
    # Both directions visit the same columns: a single frame says nothing either.
    left, right = clips[0]["rgb"], clips[2]["rgb"]
    np.testing.assert_array_equal(left[::-1].max(axis=0) > 0.5, right.max(axis=0) > 0.5)


def test_the_in_memory_dataset_serves_the_generated_clips():
    dataset = data.get_dataset(
        "synthetic_audiovisual",
        batch_size=8,
        eval_batch_size=12,
        shuffle_seed=0,
        num_train=16,
        num_test=20,
        **SIZES,
    )
    batch = next(dataset.train_iter)
    assert batch["inputs"]["rgb"].shape == (8, 8, 16, 16, 3) and batch["inputs"]["spectrogram"].shape == (
        8,
        32,
        16,
    )
    assert batch["label"].dtype == np.int32 and batch["batch_mask"].tolist() == [1.0] * 8
    test = list(dataset.test_iter)
    assert len(test) == 2 and test[1]["batch_mask"].tolist() == [1.0] * 8 + [0.0] * 4
    inputs, labels = synthetic.make_split("test", 20, **SIZES)
    np.testing.assert_array_equal(test[0]["inputs"]["spectrogram"], inputs["spectrogram"][:12])
    np.testing.assert_array_equal(test[0]["label"], labels[:12])
    assert dataset.meta_data.num_classes == 4 and dataset.meta_data["spectrogram_shape"] == (-1, 32, 16)


def test_refused_generator_arguments():
    with pytest.raises(ValueError, match="`split` must be one of"):
        synthetic.make_split("valid", 4)
    with pytest.raises(ValueError, match="`num_mel_bins` must be at least 8. Received: 6"):
        synthetic.make_split("train", 4, num_mel_bins=6)


def _reader(files, **options):
    """`audiovisual_tfrecord` over `files` (train and test), sized as the synthetic clips."""
    options = {"num_classes": 4, "stride": 1, "random_flip": False, **SIZES, **options}
    return data.get_dataset(
        "audiovisual_tfrecord",
        batch_size=4,
        eval_batch_size=8,
        shuffle_seed=0,
        train_files=files,
        test_files=files,
        **options,
    )


@pytest.fixture(scope="module")
def synthetic_records(tmp_path_factory):
    return make_records.write(str(tmp_path_factory.mktemp("records")), num_train=8, num_test=8, **SIZES)


def test_the_synthetic_records_read_back(synthetic_records):
    dataset = _reader(synthetic_records["test"])
    batch = next(iter(dataset.test_iter))
    inputs, labels = synthetic.make_split("test", 8, **SIZES)
    np.testing.assert_array_equal(batch["label"], labels)
    np.testing.assert_array_equal(batch["inputs"]["spectrogram"], inputs["spectrogram"])
    # JPEG changes the noise a little, not the moving square.
    assert np.abs(batch["inputs"]["rgb"] - inputs["rgb"]).mean() < 0.06
    np.testing.assert_array_equal(decoded_direction(batch["inputs"]["rgb"]), decoded_direction(inputs["rgb"]))
    train = next(dataset.train_iter)
    assert train["inputs"]["rgb"].shape == (4, 8, 16, 16, 3) and train["inputs"]["spectrogram"].shape == (
        4,
        32,
        16,
    )
    assert dataset.meta_data.num_train_examples == 8


def test_test_clips_start_at_the_same_fraction_of_both_modalities(synthetic_records):
    # Two clips of half the length: the first and the second half of each modality.
    dataset = _reader(synthetic_records["test"], num_frames=4, spectrogram_frames=16, num_test_clips=2)
    batch = next(iter(dataset.test_iter))
    assert batch["inputs"]["rgb"].shape == (8, 2, 4, 16, 16, 3)
    inputs, _ = synthetic.make_split("test", 8, **SIZES)
    np.testing.assert_array_equal(batch["inputs"]["spectrogram"][:, 0], inputs["spectrogram"][:, :16])
    np.testing.assert_array_equal(batch["inputs"]["spectrogram"][:, 1], inputs["spectrogram"][:, 16:])
    for view, frames in ((0, slice(0, 4)), (1, slice(4, 8))):
        assert np.abs(batch["inputs"]["rgb"][:, view] - inputs["rgb"][:, frames]).mean() < 0.06
    assert dataset.meta_data.num_test_views == 2


def _hertz(mel):
    return 700.0 * (np.exp(mel / 1127.0) - 1.0)


def test_waveforms_become_log_mel_spectrograms(tmp_path):
    # Tones at the centres of mel bands 5 and 20 of 32 (HTK mel scale, 0 Hz to Nyquist).
    sample_rate, num_mel_bins = 16_000, 32
    centres = np.linspace(0.0, 1127.0 * np.log1p(sample_rate / 2 / 700.0), num_mel_bins + 2)[1:-1]
    time = np.arange(sample_rate) / sample_rate
    waveforms = [0.5 * np.sin(2 * np.pi * _hertz(centres[band]) * time) for band in (5, 20)]
    videos = [np.zeros((4, 16, 16, 3), np.uint8)] * 2
    path = str(tmp_path / "tones.tfrecord")
    records.write_audiovisual_records(path, videos, [0, 1], waveforms=waveforms)
    dataset = _reader(
        path,
        num_frames=4,
        audio="waveform",
        sample_rate=sample_rate,
        num_mel_bins=num_mel_bins,
        spectrogram_frames=100,  # one second: one frame every 10 ms
    )
    spectrogram = next(iter(dataset.test_iter))["inputs"]["spectrogram"][:2]
    assert spectrogram.shape == (2, 100, num_mel_bins)
    np.testing.assert_array_equal(spectrogram[:, 10:90].argmax(axis=-1), [[5] * 80, [20] * 80])


def test_several_labels_become_multi_hot(tmp_path):
    path = str(tmp_path / "multi.tfrecord")
    videos, spectrograms = [np.zeros((8, 16, 16, 3), np.uint8)] * 2, [np.zeros((32, 16), np.float32)] * 2
    records.write_audiovisual_records(path, videos, [[0, 2], 3], spectrograms=spectrograms)
    label = next(iter(_reader(path, multi_label=True).test_iter))["label"][:2]
    np.testing.assert_array_equal(label, [[1, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="record 0 of .* has several labels, but `multi_label` is False"):
        _reader(path)
    with pytest.raises(ValueError, match=r"record 1 of .* has a label outside \[0, `num_classes` \(=3\)\)"):
        _reader(path, multi_label=True, num_classes=3)
    with pytest.raises(
        ValueError, match="record 0 of .* has no audio in the feature list 'WAVEFORM/feature/floats'"
    ):
        _reader(path, multi_label=True, audio="waveform")
    with pytest.raises(ValueError, match=r"not whole frames of `num_mel_bins` \(=12\)"):
        _reader(path, multi_label=True, num_mel_bins=12)


def test_refused_writes_and_options(tmp_path):
    video, spectrogram = np.zeros((2, 8, 8, 3), np.uint8), np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match="exactly one of `spectrograms` or `waveforms`"):
        records.write_audiovisual_records(tmp_path / "a.tfrecord", [video], [0])
    with pytest.raises(ValueError, match=r"`videos\[0\]` must be uint8"):
        records.write_audiovisual_records(
            tmp_path / "a.tfrecord", [video / 255], [0], spectrograms=[spectrogram]
        )
    with pytest.raises(ValueError, match=r"`labels\[0\]` must be a non-negative int"):
        records.write_audiovisual_records(tmp_path / "a.tfrecord", [video], [-1], spectrograms=[spectrogram])
    with pytest.raises(ValueError, match=r"`waveforms\[0\]` must be a non-empty float array \[samples\]"):
        records.write_audiovisual_records(tmp_path / "a.tfrecord", [video], [0], waveforms=[spectrogram])
    records.write_audiovisual_records(tmp_path / "a.tfrecord", [video], [0], spectrograms=[spectrogram])
    with pytest.raises(ValueError, match="`audio` must be one of"):
        _reader(str(tmp_path / "a.tfrecord"), audio="mfcc")
