"""Facial keypoint detection: the logic behind the DVC stages in stages/."""
