#!/bin/sh
exec ./wordcount "$@"
