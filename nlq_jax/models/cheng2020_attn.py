"""cheng2020-attn: `nlq_jax.models.cheng2020` with the attention modules."""

from nlq_jax.models import cheng2020
from nlq_jax.models.cheng2020 import *  # noqa: F403 (the model module's interface)


class Model(cheng2020.Model):
    attention: bool = True
