# Sample every snapshot of a run with the EDM Heun sampler (or the closed-form optimum of its subset).


rule sample:
    input:
        settings=RESULTS / "runs" / "{run_id}" / "n{size}" / "run.json",
        subset=get_subset,
        trained=get_trained,
    output:
        samples=RESULTS / "runs" / "{run_id}" / "n{size}" / "samples.npz",
        grid=RESULTS / "runs" / "{run_id}" / "n{size}" / "samples.png",
    log:
        RESULTS / "logs" / "sample" / "{run_id}-n{size}.log",
    benchmark:
        RESULTS / "benchmarks" / "sample" / "{run_id}-n{size}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=uses_gpu,
    conda:
        ENV
    script:
        "../scripts/sample.py"
