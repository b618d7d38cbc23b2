"""The pure core: values, validation rules, errors and ports. No I/O lives here."""
