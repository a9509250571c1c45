"""Getting market data into the store from files (CSV import) and embedded samples."""
