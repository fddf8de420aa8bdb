"""Task objects: a loss and `(value_sum, normalizer)` metrics, weighted by `batch_mask`."""

from ._box_ops import (
    box_cxcywh_to_xyxy as box_cxcywh_to_xyxy,
    box_iou as box_iou,
    box_xyxy_to_cxcywh as box_xyxy_to_cxcywh,
    generalized_box_iou as generalized_box_iou,
)
from ._classification import ClassificationTask as ClassificationTask
from ._co_training import CoTrainingTask as CoTrainingTask
from ._coco_evaluator import CocoEvaluator as CocoEvaluator
from ._contrastive import ContrastiveTask as ContrastiveTask
from ._detection import DetectionTask as DetectionTask, scored_boxes as scored_boxes
from ._dice_loss import dice_loss as dice_loss
from ._encoder_decoder import EncoderDecoderTask as EncoderDecoderTask
from ._evaluator import Evaluator as Evaluator
from ._focal_loss import sigmoid_focal_loss as sigmoid_focal_loss, softmax_focal_loss as softmax_focal_loss
from ._l1_loss import box_l1_loss as box_l1_loss, l1_loss as l1_loss
from ._label_checks import LabelRangeError as LabelRangeError
from ._matchers import (
    greedy_matcher as greedy_matcher,
    hungarian_jax_matcher as hungarian_jax_matcher,
    hungarian_matcher as hungarian_matcher,
    sinkhorn_matcher as sinkhorn_matcher,
)
from ._multilabel import MultiLabelClassificationTask as MultiLabelClassificationTask
from ._registry import create_task as create_task, list_tasks as list_tasks, register as register
from ._regression import RegressionTask as RegressionTask
from ._retrieval_evaluator import RetrievalEvaluator as RetrievalEvaluator
from ._segmentation import SegmentationTask as SegmentationTask
from ._task import AbstractTask as AbstractTask
from ._zero_shot import ZeroShotClassifier as ZeroShotClassifier
