# Class-balanced, nested, seeded subsets of a data source (one .npz per data setting and size).


rule subset:
    output:
        RESULTS / layout.subset("{data_id}", "{size}"),
    log:
        RESULTS / layout.log("subset", "{data_id}-n{size}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=capped(10),
    params:
        spec=get_subset_spec,
    script:
        "../scripts/subset.py"
