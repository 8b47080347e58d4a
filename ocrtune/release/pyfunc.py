"""The registered MLflow model, logged "from code": no pickled classes, only this file and the export.

Its artifact is the EasyOCR export directory (NAME.pth, NAME.yaml, NAME.py); ``predict`` reads each image
through ``easyocr.Reader`` exactly as a user of plain easyocr would, so a served model and a pulled model
give the same text. Input: a DataFrame (or list) with an ``image`` column of file paths or base64-encoded
PNG/JPEG bytes. Output: ``text`` and ``confidence`` per image.
"""

from __future__ import annotations

import mlflow
import pandas as pd

try:  # where the model is served: easyocr_reader.py ships beside this file (code_paths), no ocrtune needed
    from easyocr_reader import open_reader, read_crop
except ImportError:  # when MLflow imports this file at logging time, inside ocrtune
    from ocrtune.release.easyocr_reader import open_reader, read_crop


class EasyOCRRecognizer(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.reader = open_reader(context.artifacts["easyocr_model"])

    def predict(self, context, model_input, params=None):
        if isinstance(model_input, pd.DataFrame):
            images = list(model_input["image"])
        elif isinstance(model_input, dict):
            images = list(model_input["image"])
        else:
            images = list(model_input)
        rows = [read_crop(self.reader, img) for img in images]
        return pd.DataFrame({"text": [t for t, _ in rows], "confidence": [c for _, c in rows]})


mlflow.models.set_model(EasyOCRRecognizer())
