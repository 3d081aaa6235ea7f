"""Operations around the pipeline: upstream drift, the doctor, seeding local stand-in upstreams."""
