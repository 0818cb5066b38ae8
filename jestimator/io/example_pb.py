"""The `tf.train.Example` protocol buffer messages, built in code (no TensorFlow, no protoc).

Wire-compatible with `tensorflow/core/example/{example,feature}.proto`:

    message BytesList { repeated bytes value = 1; }
    message FloatList { repeated float value = 1 [packed = true]; }
    message Int64List { repeated int64 value = 1 [packed = true]; }
    message Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                   Int64List int64_list = 3; } }
    message Features { map<string, Feature> feature = 1; }
    message Example { Features features = 1; }

The messages live in a private descriptor pool, so they never clash with TensorFlow's own classes
when both are imported; the bytes they read and write are the same.
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = 'tensorflow'
_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name: str, number: int, ftype: int, label: int = _F.LABEL_OPTIONAL,
           type_name: str | None = None, oneof: int | None = None):
  f = msg.field.add(name=name, number=number, type=ftype, label=label)
  if type_name:
    f.type_name = f'.{_PACKAGE}.{type_name}'
  if oneof is not None:
    f.oneof_index = oneof
  return f


def _build_file() -> descriptor_pb2.FileDescriptorProto:
  fd = descriptor_pb2.FileDescriptorProto(name='jestimator/io/example.proto', package=_PACKAGE,
                                          syntax='proto3')
  for name, ftype in (('BytesList', _F.TYPE_BYTES), ('FloatList', _F.TYPE_FLOAT),
                      ('Int64List', _F.TYPE_INT64)):
    _field(fd.message_type.add(name=name), 'value', 1, ftype, _F.LABEL_REPEATED)
  feature = fd.message_type.add(name='Feature')
  feature.oneof_decl.add(name='kind')
  _field(feature, 'bytes_list', 1, _F.TYPE_MESSAGE, type_name='BytesList', oneof=0)
  _field(feature, 'float_list', 2, _F.TYPE_MESSAGE, type_name='FloatList', oneof=0)
  _field(feature, 'int64_list', 3, _F.TYPE_MESSAGE, type_name='Int64List', oneof=0)
  features = fd.message_type.add(name='Features')
  entry = features.nested_type.add(name='FeatureEntry')
  entry.options.map_entry = True
  _field(entry, 'key', 1, _F.TYPE_STRING)
  _field(entry, 'value', 2, _F.TYPE_MESSAGE, type_name='Feature')
  _field(features, 'feature', 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED,
         type_name='Features.FeatureEntry')
  _field(fd.message_type.add(name='Example'), 'features', 1, _F.TYPE_MESSAGE,
         type_name='Features')
  return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_build_file())


def _cls(name: str):
  return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f'{_PACKAGE}.{name}'))


BytesList = _cls('BytesList')
FloatList = _cls('FloatList')
Int64List = _cls('Int64List')
Feature = _cls('Feature')
Features = _cls('Features')
Example = _cls('Example')

__all__ = ['BytesList', 'FloatList', 'Int64List', 'Feature', 'Features', 'Example']
