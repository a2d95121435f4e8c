"""Ingests raw image-text data into an mmscale record folder with an Apache Beam job.

  python tools/ingest.py --source=webdataset --input='shards/*.tar' --out=data/cc3m --num_shards=64
  python tools/ingest.py --source=llava --input=llava_v1_5_mix665k.json --image_root=images \
      --out=data/llava --num_shards=32 --direct_num_workers=2
  python tools/ingest.py --source=tfds --input=coco_captions --split=train --data_dir=~/tfds \
      --text_key=captions/text --out=data/coco
  # any Beam runner: --runner=DataflowRunner --project=... --region=... --temp_location=gs://...

Sources: webdataset, llava, interleaved, tfds, jsonl (docs/data_format.md, "Ingestion"). Flags
this tool does not know are Beam pipeline options and pass through unchanged; without them the
job runs on the DirectRunner with 2 local worker processes. Rerunning the same command resumes
(finished shards are kept). Exit status 1 with a message when more than --max_skip_fraction of
the inputs were bad; the reasons are in OUT/skip_report.json.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmscale.data import ingest  # noqa: E402
from mmscale.data.ingest import beam_job, common  # noqa: E402
from mmscale.errors import DataError  # noqa: E402


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
  d = common.IngestOptions()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--source", required=True, choices=sorted(ingest.SOURCES))
  p.add_argument("--input", required=True,
                 help="paths or globs, comma separated (tfds: the dataset name)")
  p.add_argument("--out", required=True, help="output record folder")
  p.add_argument("--num_shards", type=int, default=8)
  p.add_argument("--max_skip_fraction", type=float, default=0.01)
  p.add_argument("--image_root", default=d.image_root,
                 help="folder of relative image paths (default: the input file's folder)")
  p.add_argument("--image_key", default=d.image_key, help="image key (default per source)")
  p.add_argument("--text_key", default=d.text_key, help="text key (default per source)")
  p.add_argument("--split", default=d.split, help="tfds split")
  p.add_argument("--data_dir", default=d.data_dir, help="tfds data_dir")
  p.add_argument("--max_image_pixels", type=int, default=d.max_image_pixels)
  return p.parse_known_args(argv)


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  args, beam_args = parse_args(argv)
  options = common.IngestOptions(
      image_root=args.image_root, image_key=args.image_key, text_key=args.text_key,
      split=args.split, data_dir=os.path.expanduser(args.data_dir),
      max_image_pixels=args.max_image_pixels)
  try:
    manifest = beam_job.run_ingest(args.source, args.input, args.out,
                                   num_shards=args.num_shards, options=options,
                                   beam_args=beam_args,
                                   max_skip_fraction=args.max_skip_fraction)
  except DataError as e:
    print(f"ingest failed: {e}", file=sys.stderr)
    return 1
  print(f"wrote {manifest['num_records']} records {manifest['counts']} in "
        f"{len(manifest['shards'])} shards to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
