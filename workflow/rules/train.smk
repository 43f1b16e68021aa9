# One training run per (settings, |D|): run.json beside the model, EMA snapshots, resumable state.


localrules:
    run_settings,


rule run_settings:
    output:
        RESULTS / "runs" / "{run_id}" / "n{size}" / "run.json",
    params:
        settings=run_settings_of,
    log:
        RESULTS / "logs" / "run_settings" / "{run_id}-n{size}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/run_settings.py"


rule train:
    input:
        settings=RESULTS / "runs" / "{run_id}" / "n{size}" / "run.json",
        subset=get_subset,
    output:
        summary=RESULTS / "runs" / "{run_id}" / "n{size}" / "train" / "train.json",
    log:
        RESULTS / "logs" / "train" / "{run_id}-n{size}.log",
    benchmark:
        RESULTS / "benchmarks" / "train" / "{run_id}-n{size}.tsv"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    conda:
        ENV
    script:
        "../scripts/train.py"
