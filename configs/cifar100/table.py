"""RepDistiller's CIFAR-100 tables in one job: each teacher (run teacher_<model>, skipped once
finished), each student trained alone, and each method on each pair, 3 seeds, with
RepDistiller's recipe; at the end table.md / table.json: the mean +- std of each cell beside
the published number (RepDistiller's README; DKD: mdistiller's; the logit baselines: their
authors' READMEs) and the difference.

  python -m kd_jax.train --config=configs/cifar100/table.py --workdir=workdirs/cifar100/table
  python -m kd_jax.train --config=configs/cifar100/table.py:resnet32x4-resnet8x4,kd+crd ...
  python -m kd_jax.train --config=configs/cifar100/table.py:resnet56-resnet20+vgg13-vgg8,all,1 ...
  python -m kd_jax.plot --workdir=workdirs/cifar100/table --out=table.png

The argument is <pairs>,<methods>[,<seeds>]: pairs joined by '+' (all: the 13 of the tables),
methods joined by '+' from student kd fitnet at sp cc vid rkd pkt ab ft fsp nst crd crd_kd dkd
dist kd_ls dkd_ls ctkd ctkd_ls nkd wttm mlkd mlkd_ls reviewkd (all: every one; the baselines'
settings: kd_jax/recipes/baselines.py). table.md gives each cell's last-epoch and best-epoch accuracy. The job prints its budget (runs x epochs) before it starts and resumes
like every job. Use --dry_run for the time estimate.
"""
from kd_jax import recipes


def get_config(arg=""):
  return recipes.cifar100_table(*recipes.parse_table_arg(arg))
