//! Kafka's numbers for configs on the wire (DescribeConfigs,
//! IncrementalAlterConfigs), shared by the broker's API and the client.

/// ConfigResource.Type.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// ConfigSource: where a described value comes from.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// ConfigType (DescribeConfigs v3+).
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_INT: i8 = 3;
pub const TYPE_LONG: i8 = 5;
pub const TYPE_LIST: i8 = 7;

/// AlterConfigOp.OpType.
pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
