"""Representation consolidation at paper scale [INFERRED recipe: the paper's is not public;
README, *What is inferred*]: an ImageNet ResNet-50 generalist and experts fine-tuned from it
on caltech_birds2011, stanford_dogs and oxford_flowers102, consolidated into one ResNet-50
with a head per teacher on unlabelled ImageNet images; judged on oxford_iiit_pet by linear
probe and fine-tuning beside the generalist, each expert and single-head KD.

Needs the ImageNet ResNet-50 as a kd_jax run in workdirs/imagenet/resnet50 (train it with
configs/imagenet/supervised.py or convert torchvision's weights with kd_jax.convert).

  python -m kd_jax.train --config=configs/consolidation/imagenet_experts.py --workdir=workdirs/consolidation
  # other experts / proxy / downstream task, as arguments (proxy may be a union: a+b):
  # (quoted: the shell would end the command at each ';')
  python -m kd_jax.train '--config=configs/consolidation/imagenet_experts.py:caltech_birds2011,stanford_dogs;imagenet2012;cars196' ...
"""
from kd_jax import recipes


def get_config(arg=""):
  experts, proxy, downstream = (arg.split(";") + ["", "", ""])[:3]
  kw = {}
  if experts:
    kw["experts"] = tuple(experts.split(","))
  if proxy:
    kw["proxy"] = proxy
  if downstream:
    kw["downstream"] = downstream
  return recipes.imagenet_consolidation(**kw)
