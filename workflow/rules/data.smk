# Class-balanced, nested, seeded subsets of a data source (one .npz per data setting and size).


rule subset:
    output:
        RESULTS / "subsets" / "{data_id}" / "n{size}.npz",
    params:
        spec=get_subset_spec,
    log:
        RESULTS / "logs" / "subset" / "{data_id}-n{size}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=capped(10),
    conda:
        ENV
    script:
        "../scripts/subset.py"
