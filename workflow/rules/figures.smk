# Tables (CSV, one row per experiment value and size, plus EMM rows) and figures (PDF + PNG).


localrules:
    table,


rule table:
    input:
        get_table_inputs,
    output:
        RESULTS / layout.table("{figure}"),
    log:
        RESULTS / layout.log("table", "{figure}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=capped(5),
    params:
        figure=get_figure_spec,
    script:
        "../scripts/table.py"


rule figure:
    input:
        unpack(get_figure_inputs),
    output:
        pdf=RESULTS / layout.figure_files("{figure}")["pdf"],
        png=report(
            RESULTS / layout.figure_files("{figure}")["png"],
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        RESULTS / layout.log("figure", "{figure}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=capped(10),
    params:
        figure=get_figure_spec,
    script:
        "../scripts/figure.py"
