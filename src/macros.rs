//! Macros shared by modules that wrap DataFusion's own functions.

/// The `AggregateUDFImpl` methods a wrapper around another aggregate (its field `inner`, an
/// `Arc<AggregateUDF>`) keeps as they are: the name, signature, types, documentation and order
/// sensitivity stay the wrapped function's, so plans and error messages do not show the
/// wrapper. The wrapper writes the methods it changes (accumulators, state) itself.
macro_rules! forward_aggregate_signature {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn aliases(&self) -> &[String] {
            self.inner.aliases()
        }

        fn schema_name(
            &self,
            params: &datafusion::logical_expr::expr::AggregateFunctionParams,
        ) -> datafusion::common::Result<String> {
            self.inner.inner().schema_name(params)
        }

        fn signature(&self) -> &datafusion::logical_expr::Signature {
            self.inner.signature()
        }

        fn return_type(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
            self.inner.return_type(arg_types)
        }

        fn return_field(
            &self,
            arg_fields: &[datafusion::arrow::datatypes::FieldRef],
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
            self.inner.return_field(arg_fields)
        }

        fn is_nullable(&self) -> bool {
            self.inner.is_nullable()
        }

        fn coerce_types(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<Vec<datafusion::arrow::datatypes::DataType>> {
            self.inner.coerce_types(arg_types)
        }

        fn default_value(
            &self,
            data_type: &datafusion::arrow::datatypes::DataType,
        ) -> datafusion::common::Result<datafusion::common::ScalarValue> {
            self.inner.default_value(data_type)
        }

        fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
            self.inner.documentation()
        }

        fn order_sensitivity(&self) -> datafusion::logical_expr::utils::AggregateOrderSensitivity {
            self.inner.inner().order_sensitivity()
        }
    };
}

pub(crate) use forward_aggregate_signature;
