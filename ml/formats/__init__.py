"""Packed formats written and read natively: MXNet RecordIO, TFRecord, HDF5 stores, memfiles."""
