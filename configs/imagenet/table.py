"""The ImageNet ResNet-34 -> ResNet-18 table of the baselines in one job: the student alone,
KD, DIST, DKD, KD+LS, NKD, CTKD (on KD and on DKD) and ReviewKD, each as its authors ran it
(kd_jax/recipes/baselines.py), 1 seed by default; at the end table.md / table.json: each
cell's last-epoch and best-epoch accuracy beside the published number of the code that ran it
(kd_jax/recipes/published.py: IMAGENET_R34_R18; the teacher's and WTTM's rows have no runs).

  python -m kd_jax.train --config=configs/imagenet/table.py --workdir=workdirs/imagenet/table
  python -m kd_jax.train --config=configs/imagenet/table.py:student+kd+dist,3 ...

The argument is <methods>[,<seeds>]: methods joined by '+' from student kd dist dkd kd_ls nkd
ctkd ctkd_dkd reviewkd wttm (all: every one). The teacher is read from workdirs/imagenet/resnet34
(python -m kd_jax.convert --arch=resnet34 --torch=resnet34.pth --out=workdirs/imagenet/resnet34).
ImageNet needs its manual download in <data_dir>/downloads/manual. Use --dry_run for the budget.
"""
from kd_jax import recipes


def get_config(arg=""):
  return recipes.imagenet_table(*recipes.parse_imagenet_table_arg(arg))
