"""ClientApps that misbehave on purpose: NaN weights, an exception, memory outside torch."""
