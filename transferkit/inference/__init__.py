"""Using a trained or pretrained classifier: prediction, evaluation, the ImageNet class names
and class maps, and evaluation reports."""

from transferkit.inference.evaluate import Images, Scores, check_class_map, score, select_images
from transferkit.inference.predict import collect_images, predict_files

__all__ = ["Images", "Scores", "check_class_map", "collect_images", "predict_files", "score", "select_images"]
