"""ocrtune: fine-tune EasyOCR's text recognizer and hand it back in EasyOCR's own format.

The core library is importable without KFP or Kubernetes; those live in components/ and pipelines/.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ocrtune")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
