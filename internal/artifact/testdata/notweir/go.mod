module example.com/notweir

go 1.22
