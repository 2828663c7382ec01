"""What `make demo`, the tests and the benchmarks generate, kept out of the library (ml/): the
bundled sample data (`python -m demo.sample_data`), photo-like JPEGs for benchmarks, the face
trainer's inputs built without Dagster (demo.face_inputs), and the summary printed at the end
of `make demo` (`python -m demo.summary`)."""
