"""Datasets, splitting, normalisation, batching and augmentation for scratchcnn.

Images live in memory as uint8 NHWC (``Dataset``); a trainer turns each batch into float NCHW
in [0, 1] (``to_float_nchw``), augments it (``scratchcnn.data.transforms``) and normalises it
with statistics fitted on the training split (``Normalizer``).
"""

from .cifar import read_cifar10_archive, read_cifar10_binary, read_cifar10_python
from .dataset import (
    ChecksumError,
    DataError,
    Dataset,
    DownloadError,
    default_cache_dir,
    md5_file,
)
from .download import download_url
from .fashion_mnist import read_fashion_mnist, read_idx
from .folders import read_image_file, read_image_folder
from .load import (
    DATASET_NAMES,
    is_dataset_name,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_svhn,
)
from .loader import BatchIterator
from .preprocess import Normalizer, split_train_val, to_float_nchw
from .svhn import read_svhn, read_svhn_mat

__all__ = [
    "DATASET_NAMES",
    "BatchIterator",
    "ChecksumError",
    "DataError",
    "Dataset",
    "DownloadError",
    "Normalizer",
    "default_cache_dir",
    "download_url",
    "is_dataset_name",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_svhn",
    "md5_file",
    "read_cifar10_archive",
    "read_cifar10_binary",
    "read_cifar10_python",
    "read_fashion_mnist",
    "read_idx",
    "read_image_file",
    "read_image_folder",
    "read_svhn",
    "read_svhn_mat",
    "split_train_val",
    "to_float_nchw",
]
