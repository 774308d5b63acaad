"""The catalog's models as the public API lists them (ListModels, GET /api/v1/models and
OpenAI's GET /v1/models)."""

from __future__ import annotations

from pixelrelay.catalog import Catalog, ModelSpec
from pixelrelay.v1 import public_api_pb2

OWNED_BY = "pixelrelay"


def listed(models: Catalog) -> public_api_pb2.ListModelsResponse:
    return public_api_pb2.ListModelsResponse(
        models=[model_to_proto(models, name, spec) for name, spec in models.models.items()]
    )


def model_to_proto(models: Catalog, name: str, spec: ModelSpec) -> public_api_pb2.Model:
    caps = spec.capabilities
    return public_api_pb2.Model(
        id=name,
        created=spec.created,
        owned_by=OWNED_BY,
        description=spec.description,
        aliases=sorted(alias for alias, target in models.aliases.items() if target == name),
        capabilities=public_api_pb2.ModelCapabilities(
            max_n=caps.max_n,
            sizes=caps.sizes,
            ratios=caps.ratios,
            resolutions=caps.resolutions,
            qualities=caps.qualities,
            backgrounds=caps.backgrounds,
            moderations=caps.moderations,
            formats=caps.formats,
            output_compression=caps.output_compression,
            masks=caps.masks,
            max_references=caps.max_references,
            partial_images=caps.partial_images,
        ),
        prices=[
            public_api_pb2.ModelPrice(
                id=row.id,
                credits=row.credits,
                resolutions=sorted(row.resolutions or ()),
                qualities=sorted(row.qualities or ()),
            )
            for row in spec.prices
        ],
        auto_quoted_as=spec.auto_quoted_as or "",
    )
