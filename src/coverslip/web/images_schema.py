"""The images API's image document: its JSON schema, how an image renders, what may change.

Clients (python-glanceclient among them) fetch the schema and validate every image they
receive against it, so the rendering and the schema are kept side by side here.
"""

from __future__ import annotations

from typing import Any

import falcon

from coverslip.catalog.records import STATUSES, ApiFields, Image
from coverslip.errors import BadParameter, Forbidden
from coverslip.formats import FORMATS

DISK_FORMATS = FORMATS
CONTAINER_FORMATS = ("bare",)
VISIBILITIES = ("public", "private", "shared")
PATCH_MEDIA_TYPE = "application/openstack-images-v2.1-json-patch"

# Attributes a client may set, with their JSON types.
WRITABLE: dict[str, dict[str, Any]] = {
    "name": {"type": ["null", "string"], "maxLength": 255, "description": "Name of the image"},
    "description": {
        "type": ["null", "string"],
        "maxLength": 65535,
        "description": "What the image shows, in words (searched with its name)",
    },
    "visibility": {
        "type": "string",
        "enum": list(VISIBILITIES),
        "description": "public: in the public group; private: only the owner's; "
        "shared: the members of the image's group",
    },
    "protected": {"type": "boolean", "description": "If true, the image cannot be deleted"},
    "os_hidden": {"type": "boolean", "description": "If true, the image is left out of lists"},
    "min_disk": {"type": "integer", "minimum": 0, "description": "Kept for compatibility"},
    "min_ram": {"type": "integer", "minimum": 0, "description": "Kept for compatibility"},
    "disk_format": {
        "type": ["null", "string"],
        "enum": [None, *DISK_FORMATS],
        "description": "Format of the file (ome-zarr: a zip of the .zarr folder)",
    },
    "container_format": {
        "type": ["null", "string"],
        "enum": [None, *CONTAINER_FORMATS],
        "description": "Container of the file",
    },
    "tags": {
        "type": "array",
        "items": {"type": "string", "maxLength": 255},
        "description": "Tags of the image",
    },
    "dataset": {"type": ["null", "integer"], "description": "Id of the image's dataset"},
}

READ_ONLY: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "pattern": "^[0-9]+$", "description": "Id of the image"},
    "status": {"type": "string", "enum": list(STATUSES), "description": "Status of the image"},
    "owner": {"type": ["null", "string"], "description": "Id of the owning user"},
    "checksum": {"type": ["null", "string"], "maxLength": 32, "description": "md5 of the data"},
    "os_hash_algo": {"type": ["null", "string"], "description": "Algorithm of os_hash_value"},
    "os_hash_value": {"type": ["null", "string"], "description": "sha512 of the data"},
    "size": {"type": ["null", "integer"], "description": "Size of the data in bytes"},
    "virtual_size": {"type": ["null", "integer"], "description": "Bytes of the pixels"},
    "created_at": {"type": "string", "description": "When the image was created"},
    "updated_at": {"type": "string", "description": "When the image last changed"},
    "pixel_type": {"type": ["null", "string"], "description": "Pixel type once imported"},
    "shape": {
        "type": ["null", "array"],
        "items": {"type": "integer"},
        "description": "Sizes T, C, Z, Y, X once imported",
    },
    "message": {"type": "string", "description": "Why the last upload or import failed"},
    "fileset": {
        "type": ["null", "string"],
        "description": "Id of the fileset (the file) the image was imported from; one image only",
    },
    "fileset_images": {
        "type": ["null", "array"],
        "items": {"type": "string"},
        "description": "Ids of the fileset's images you may see, in the file's order; one image only",
    },
    "self": {"type": "string"},
    "file": {"type": "string"},
    "schema": {"type": "string"},
}

# Names no client may use, as Glance reserves them.
RESERVED = ("deleted", "deleted_at", "location", "locations", "direct_url", "stores")
RESERVED_PREFIX = "os_glance"


def image_schema() -> dict[str, Any]:
    """Return the JSON schema of an image document."""
    properties = {name: dict(spec) for name, spec in WRITABLE.items()}
    for name, spec in READ_ONLY.items():
        properties[name] = {**spec, "readOnly": True}
    return {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict[str, Any]:
    """Return the JSON schema of a page of images."""
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def _stamp(image_time: Any) -> str:
    return str(image_time.strftime("%Y-%m-%dT%H:%M:%SZ"))


def render(image: Image, fields: ApiFields, visibility: str) -> dict[str, Any]:
    """Return the image document of ``image``; links are relative to the API root."""
    active = image.status == "active"
    doc: dict[str, Any] = {
        key: str(value)
        for key, value in image.properties.items()
        if key not in WRITABLE and key not in READ_ONLY and not _reserved(key)
    }
    doc.update(
        {
            "id": str(image.id),
            "name": image.name,
            "description": image.description or None,
            "status": image.status,
            "visibility": visibility,
            "protected": fields.protected,
            "os_hidden": fields.os_hidden,
            "owner": str(image.owner_id),
            "checksum": image.md5 if active else None,
            "os_hash_algo": "sha512" if active and image.sha512 else None,
            "os_hash_value": image.sha512 if active else None,
            "size": image.original_size if active else None,
            "virtual_size": _pixel_bytes(image) if active else None,
            "min_disk": fields.min_disk,
            "min_ram": fields.min_ram,
            "disk_format": fields.disk_format,
            "container_format": fields.container_format,
            "tags": list(fields.tags),
            "dataset": image.dataset_ids[0] if image.dataset_ids else None,
            "pixel_type": image.pixel_type or None,
            "shape": [image.size_t, image.size_c, image.size_z, image.size_y, image.size_x]
            if active
            else None,
            "message": image.message,
            "created_at": _stamp(image.created),
            "updated_at": _stamp(image.updated),
            "self": f"/v2/images/{image.id}",
            "file": f"/v2/images/{image.id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    return doc


def _pixel_bytes(image: Image) -> int | None:
    sizes = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "uint32": 4, "int32": 4}
    width = sizes.get(image.pixel_type, 8 if image.pixel_type == "float64" else 4)
    if not image.pixel_type:
        return None
    return image.size_t * image.size_c * image.size_z * image.size_y * image.size_x * width


def _reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIX)


def check_name(name: str) -> None:
    """Raise Forbidden for a read-only or reserved attribute name."""
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if _reserved(name):
        raise Forbidden(f"Attribute '{name}' is reserved.")


def check_value(name: str, value: Any) -> Any:
    """Return ``value`` checked against the schema of attribute ``name`` (400 if it is wrong)."""
    spec = WRITABLE.get(name)
    if spec is None:
        if not isinstance(value, str):
            raise BadParameter(name, "extra properties take string values")
        if len(name) > 255 or len(value) > 65535:
            raise BadParameter(name, "extra properties have names up to 255 characters")
        return value
    if name == "tags":
        if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
            raise BadParameter(name, "a list of strings")
        if any(len(tag) > 255 or not tag for tag in value):
            raise BadParameter(name, "tags have 1 to 255 characters")
        return list(dict.fromkeys(value))
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    if value is None and "null" in kinds:
        return None
    expected = {"string": str, "boolean": bool, "integer": int}[
        next(kind for kind in kinds if kind != "null")
    ]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise BadParameter(name, f"{value!r} is not of type {' or '.join(kinds)}")
    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(str(choice) for choice in spec["enum"] if choice is not None)
        raise BadParameter(name, f"{value!r} is not one of {allowed}")
    if isinstance(value, str) and len(value) > spec.get("maxLength", 65535):
        raise BadParameter(name, f"longer than {spec['maxLength']} characters")
    if isinstance(value, int) and value < spec.get("minimum", value):
        raise BadParameter(name, f"must be at least {spec['minimum']}")
    return value


def parse_patch(document: Any) -> list[tuple[str, str, Any]]:
    """Return (op, attribute, value) of each operation of a JSON-patch document (RFC 6902).

    Raises BadParameter for a malformed document and Forbidden for read-only or reserved
    attributes, before anything changes.
    """
    if not isinstance(document, list):
        raise BadParameter("body", "a JSON patch is a list of operations")
    changes = []
    for number, operation in enumerate(document):
        if not isinstance(operation, dict):
            raise BadParameter("body", f"operation {number} is not an object")
        op = operation.get("op")
        if op not in ("add", "remove", "replace"):
            raise BadParameter("op", f"operation {number}: {op!r} is not add, remove or replace")
        path = operation.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1:
            raise BadParameter("path", f"operation {number}: {path!r} is not /<attribute>")
        name = path[1:].replace("~1", "/").replace("~0", "~")
        if not name:
            raise BadParameter("path", f"operation {number}: an empty attribute name")
        check_name(name)
        if op == "remove":
            if name in WRITABLE:
                raise Forbidden(f"Attribute '{name}' cannot be removed.")
            changes.append((op, name, None))
            continue
        if "value" not in operation:
            raise BadParameter("value", f"operation {number}: {op} needs a value")
        changes.append((op, name, check_value(name, operation["value"])))
    return changes


def parse_create(document: Any) -> dict[str, Any]:
    """Return the checked attributes of a create request."""
    if not isinstance(document, dict):
        raise BadParameter("body", "a JSON object of image attributes")
    values = {}
    for name, value in document.items():
        check_name(name)
        values[name] = check_value(name, value)
    return values


class Versions:
    """`GET /versions` (below the root and at the top): the API versions, for discovery."""

    def __init__(self, root: str) -> None:
        self.root = root

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        href = f"{req.prefix}{self.root}/v2/"
        versions = [
            "2.12",
            "2.11",
            "2.10",
            "2.9",
            "2.8",
            "2.7",
            "2.6",
            "2.5",
            "2.4",
            "2.3",
            "2.2",
            "2.1",
            "2.0",
        ]
        resp.media = {
            "versions": [
                {
                    "id": f"v{version}",
                    "status": "CURRENT" if i == 0 else "SUPPORTED",
                    "links": [{"rel": "self", "href": href}],
                }
                for i, version in enumerate(versions)
            ]
        }


class Schema:
    """`GET /api/v2/schemas/...`: the JSON schemas clients validate against."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.schema
