"""A tiny ViViT (factorised encoder) on synthetic 2-class videos: which way does the square move?

    python projects/vivit/make_synthetic_videos.py --out workdirs/synthetic_videos
    scenic-eqx train --config projects/vivit/configs/synthetic_video.py --workdir workdirs/vivit_synthetic

Reads the DMVR-layout records written by the first command (override their place with
`--config.dataset.train_files=GLOB --config.dataset.test_files=GLOB`). Clips of 8
frames from 12-frame 16x16 videos, 2x4x4 tubelets. Reaches 100% test accuracy on the 64
held-out videos (2 clips x 3 crops per video) in 300 steps: 4 minutes of wall time on 2
shared CPU cores, 1.5 minutes of CPU time (see projects/vivit/README.md). For a run with
nothing to prepare, the same videos made in memory, see `smoke.py`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset_name = "video_tfrecord"
    config.dataset = ml_collections.ConfigDict(
        dict(
            train_files="workdirs/synthetic_videos/train-*.tfrecord",
            test_files="workdirs/synthetic_videos/test-*.tfrecord",
            num_classes=2,
            num_frames=8,
            stride=1,
            image_size=16,
            # 2 clips x 3 crops = 6 views per eval video, their logits averaged by ViViT.
            num_test_clips=2,
            num_test_crops=3,
            # A mirrored clip would move the other way: flipping would swap the classes.
            random_flip=False,
            cache=True,
        )
    )
    config.batch_size = 32
    config.eval_batch_size = 32
    config.model_name = "vivit_ti16x2"
    config.model = ml_collections.ConfigDict(
        dict(
            tubelet_size=(2, 4, 4),
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            mlp_dim=64,
            num_frames=8,
            image_size=16,
            attention_type="factorized_encoder",
            num_temporal_layers=1,
        )
    )
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(dict(base_learning_rate=1e-3, warmup_steps=30))
    config.grad_clip_norm = 1.0
    config.num_train_steps = 300
    config.log_every = 25
    config.eval_every = 100
    config.checkpoint_every = 100
    config.seed = 0
    return config
