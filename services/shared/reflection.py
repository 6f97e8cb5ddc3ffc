"""Server reflection that keeps the protos' comments.

Python's generated modules carry descriptors without SourceCodeInfo, so the stock
reflection service cannot show comments to `grpcurl describe`. `make proto` also
writes a descriptor set built with --include_source_info; this servicer answers
from it, and from the default pool for anything else (health, reflection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import imagepipe.v1

__all__ = ["DESCRIPTOR_SET", "DocumentedReflection", "add_reflection"]

DESCRIPTOR_SET = Path(imagepipe.v1.__file__).parent / "descriptor_set.binpb"
SERVICE_NAME = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name


def _symbols(file: descriptor_pb2.FileDescriptorProto) -> Iterable[str]:
    prefix = f"{file.package}." if file.package else ""

    def messages(items: Iterable[descriptor_pb2.DescriptorProto], scope: str) -> Iterable[str]:
        for message in items:
            name = f"{scope}{message.name}"
            yield name
            yield from (f"{name}.{field.name}" for field in message.field)
            yield from (f"{name}.{enum.name}" for enum in message.enum_type)
            yield from messages(message.nested_type, f"{name}.")

    yield from messages(file.message_type, prefix)
    for enum in file.enum_type:
        yield f"{prefix}{enum.name}"
        yield from (f"{prefix}{value.name}" for value in enum.value)
    for service in file.service:
        yield f"{prefix}{service.name}"
        yield from (f"{prefix}{service.name}.{method.name}" for method in service.method)
    yield from (f"{prefix}{extension.name}" for extension in file.extension)


class DocumentedReflection(reflection_pb2_grpc.ServerReflectionServicer):
    def __init__(self, service_names: Iterable[str], descriptor_set: Path = DESCRIPTOR_SET):
        self._services = sorted(service_names)
        self._files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        if descriptor_set.exists():
            files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
            self._files = {f.name: f for f in files.file}
        self._symbol_files = {s: f.name for f in self._files.values() for s in _symbols(f)}
        self._pool = descriptor_pool.Default()

    def _file(self, name: str) -> descriptor_pb2.FileDescriptorProto:
        if name in self._files:
            return self._files[name]
        proto = descriptor_pb2.FileDescriptorProto()
        self._pool.FindFileByName(name).CopyToProto(proto)
        return proto

    def _with_dependencies(self, name: str) -> list[bytes]:
        ordered: list[bytes] = []
        seen: set[str] = set()
        pending = [name]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            proto = self._file(current)
            ordered.append(proto.SerializeToString())
            pending.extend(proto.dependency)
        return ordered

    def _file_of_symbol(self, symbol: str) -> str:
        if symbol in self._symbol_files:
            return self._symbol_files[symbol]
        return str(self._pool.FindFileContainingSymbol(symbol).name)

    def _answer(
        self, request: reflection_pb2.ServerReflectionRequest
    ) -> reflection_pb2.ServerReflectionResponse:
        response = reflection_pb2.ServerReflectionResponse(
            valid_host=request.host, original_request=request
        )
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                response.list_services_response.service.extend(
                    reflection_pb2.ServiceResponse(name=name) for name in self._services
                )
            elif kind == "file_by_filename":
                response.file_descriptor_response.file_descriptor_proto.extend(
                    self._with_dependencies(request.file_by_filename)
                )
            elif kind == "file_containing_symbol":
                response.file_descriptor_response.file_descriptor_proto.extend(
                    self._with_dependencies(self._file_of_symbol(request.file_containing_symbol))
                )
            elif kind == "file_containing_extension":
                extension = request.file_containing_extension
                message = self._pool.FindMessageTypeByName(extension.containing_type)
                found = self._pool.FindExtensionByNumber(message, extension.extension_number)
                response.file_descriptor_response.file_descriptor_proto.extend(
                    self._with_dependencies(self._file_of_symbol(found.full_name))
                )
            elif kind == "all_extension_numbers_of_type":
                message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                response.all_extension_numbers_response.base_type_name = message.full_name
                response.all_extension_numbers_response.extension_number.extend(
                    ext.number for ext in self._pool.FindAllExtensions(message)
                )
            else:
                raise KeyError(kind)
        except KeyError:
            response.ClearField("file_descriptor_response")
            response.error_response.error_code = grpc.StatusCode.NOT_FOUND.value[0]
            response.error_response.error_message = "not found"
        return response

    async def ServerReflectionInfo(
        self,
        request_iterator: AsyncIterator[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async for request in request_iterator:
            yield self._answer(request)


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    names = [*service_names, SERVICE_NAME]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
        DocumentedReflection(names), server
    )
