"""Function matching (Beyer et al., CVPR 2022) on ImageNet, resnet50 -> resnet18, after
big_vision's configs/proj/distill/bit_i1k.py: one view for both (inception crop 224 + flip,
mixup p=1), KL at T=1, batch 4096, AdamW lr 0.03 per 4096, clip 1, 5k warm-up steps, cosine,
1200 epochs. The teacher is read from workdirs/imagenet/resnet50 (train it with
configs/imagenet/supervised.py --config.model=resnet50, or convert torchvision's weights:
python -m kd_jax.convert --arch=resnet50 --torch=resnet50.pth --out=workdirs/imagenet/resnet50).

  python -m kd_jax.train --config=configs/imagenet/function_matching.py --workdir=workdirs/imagenet/fm
  python -m kd_jax.train --config=configs/imagenet/function_matching.py --config.batch_size=1024
"""
from kd_jax import recipes


def get_config():
  return recipes.imagenet_function_matching()
