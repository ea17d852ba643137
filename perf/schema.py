"""What the two file formats (perf.baselines, perf.results) share: number types, the model base,
and the samples of every kind of evidence (perf.evidence), by key, one list each."""
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, create_model

from perf.evidence import SAMPLED

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]


class Model(BaseModel):
    """Unknown fields are kept: a newer suite's files still read."""
    model_config = ConfigDict(extra="allow")


class ModelIdentity(Model):
    """Which model a run or an entry measured (perf.models.model_identity): what is compared."""
    config: str
    weights: str


# samples[key]: one value per cycle (or per profiled cycle) of each kind of evidence.
Samples = create_model("Samples", __base__=Model,
                       **{kind.key: (list[NonNegative if kind.non_negative else Positive], []) for kind in SAMPLED})
