"""kd_jax: knowledge distillation in JAX/Flax."""
import re

import setuptools

# The one place the version is written: kd_jax/__init__.py (CITATION.cff repeats it; a test
# checks they agree).
VERSION = re.search(r'__version__ = "([^"]+)"',
                    open("kd_jax/__init__.py", encoding="utf-8").read()).group(1)

# Lower bounds are the versions tested together (see constraints.txt for the
# full tested set, which the README install and CI use).
INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "tensorflow-datasets>=4.9.10",
    # tf.data for the TFDS pipelines; the CPU build is enough for input work.
    "tensorflow-cpu>=2.21.0",
    # Missing from the metadata of clu / TFDS but needed at run time:
    "tensorboard>=2.21.0",  # clu.metric_writers' SummaryWriter with TF 2.21
    "importlib_resources>=7.1.0",  # TFDS custom dataset builders
    "ml-collections>=1.1.0",
    "clu>=0.0.12",
    "absl-py>=2.5.1",
    "numpy>=2.0",
    # Ships the embedded default data set (8x8 handwritten digits).
    "scikit-learn>=1.9.1",
    "matplotlib>=3.11.2",  # kd_jax.plot and the notebooks' figures
]

setuptools.setup(
    name="kd_jax",
    version=VERSION,
    description="Knowledge distillation in JAX/Flax: one jitted step for every method.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["kd_jax", "kd_jax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # PyTorch only converts teachers (kd_jax.convert); the tests check conversions.
        "torch": ["torch>=2.13.0"],
        # The tests also execute the notebooks (nbclient with an IPython kernel) and check
        # the ViTs against timm's (random weights; timm needs torchvision).
        # The documentation site: mkdocs build --strict (CI runs it).
        "docs": ["mkdocs>=1.6.1", "mkdocs-material>=9.8.2", "mkdocstrings[python]>=1.0.8"],
        "test": ["pytest>=9.0", "pytest-xdist>=3.8.0", "torch>=2.14.1", "torchvision>=0.29.1",
                 "timm>=1.0.31", "nbclient>=0.11.0", "nbformat>=5.11.1", "ipykernel>=7.4.0"],
    },
)
